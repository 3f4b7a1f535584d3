"""GET /metrics for a monitoring system: the Prometheus text format (apps/core/metrics.py says what is in
it and where it comes from); `?format=json` answers the JSON job and item counters the dashboard reads.

Open to `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time; a wrong or unset token is a
401) and to staff accounts (session or API token); anyone else is refused: it counts every user's jobs."""
import hmac

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_login_failed
from django.http import HttpResponse, JsonResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission

from apps.core.metrics import job_counters, registry
from pacsportal.authentication import TOKEN_CREDENTIALS, AuditedTokenAuthentication, LockedOut, lockout_probe

SCRAPER = "metrics-token"


class MetricsTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`: the scraper, when the token is METRICS_TOKEN."""

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != b"bearer":
            return None
        expected = settings.METRICS_TOKEN.encode()
        given = words[1] if len(words) == 2 else b""
        # compare_digest takes as long for any wrong token of a length; an empty METRICS_TOKEN opens nothing
        if not expected or not hmac.compare_digest(given, expected):
            count_bad_token(request)
            raise AuthenticationFailed("Wrong metrics token: send 'Authorization: Bearer <METRICS_TOKEN>' "
                                       "(METRICS_TOKEN is set on the portal), or log in as staff.")
        return AnonymousUser(), SCRAPER

    def authenticate_header(self, request):
        return 'Bearer realm="metrics"'


def count_bad_token(request) -> None:
    """A wrong token counts with the lockout as a bad API token does (per address, LOGIN_ADDRESS_FAILURE_LIMIT):
    an address guessing METRICS_TOKEN is stopped with a 429; the right token is always served."""
    probe = lockout_probe(request._request)
    if AxesProxyHandler.is_locked(probe, TOKEN_CREDENTIALS):
        raise LockedOut()
    user_login_failed.send(sender=MetricsTokenAuthentication, credentials=TOKEN_CREDENTIALS, request=probe)
    if getattr(probe, "axes_locked_out", False):
        raise LockedOut()


class MetricsTokenScheme(OpenApiAuthenticationExtension):
    """How the API schema names the scraper's token."""
    target_class = MetricsTokenAuthentication
    name = "metricsToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "the portal's METRICS_TOKEN"}


class StaffOrScraper(BasePermission):
    message = "Metrics are for staff accounts and the monitoring system's METRICS_TOKEN."

    def has_permission(self, request, view):
        return request.auth == SCRAPER or bool(request.user and request.user.is_staff)


class AnyAccept(BaseContentNegotiation):
    """The answer's format is chosen by `?format=`, never refused for a scraper's Accept header."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema(parameters=[OpenApiParameter("format", str, enum=["json"], description="json: the JSON job "
                                            "and item counters; omitted: the Prometheus text format")],
               responses={(200, "text/plain"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.OBJECT})
@api_view(["GET"])
@authentication_classes([MetricsTokenAuthentication, AuditedTokenAuthentication, SessionAuthentication])
@permission_classes([StaffOrScraper])
def metrics(request):
    if request.query_params.get("format") == "json":
        return JsonResponse(job_counters())
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


metrics.cls.content_negotiation_class = AnyAccept  # api_view has no decorator for it
