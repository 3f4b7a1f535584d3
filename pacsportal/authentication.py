"""Who is calling, and how hard guessing is.

- The lockout (django-axes) counts failures per (account, address) pair: a guesser sharing an address with
  others (a NAT, a proxy) locks only the account it guesses, from that address. Unknown account names and
  bad API tokens have no account: they count per address as one pseudo-account each, with the higher
  LOGIN_ADDRESS_FAILURE_LIMIT, and the names typed are not stored (they are often passwords).
- AuditedTokenAuthentication: API tokens that (1) count bad tokens with django-axes, so an address guessing
  tokens is stopped, while a valid token is always served (a token is 160 random bits: the lockout stops
  the load and reports it, it is not what makes tokens unguessable), and (2) name the token's
  user as the actor of django-auditlog's records: auditlog's middleware runs before DRF authenticates a
  token, so without (2) every model change made with a token would be recorded with actor None.
- LockoutBackend: the same lockout in front of the admin's password login.
- client_address / AuditClientAddressMiddleware: the address the lockout and the audit trail record.
"""
from auditlog.context import auditlog_value
from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

TOKEN_CREDENTIALS = {"username": "(API token)"}  # axes needs a name; the token itself is never stored
UNKNOWN_ACCOUNT = "(unknown account)"  # parentheses: no real user name can have them (Django's validator)
PER_ADDRESS = {TOKEN_CREDENTIALS["username"], UNKNOWN_ACCOUNT}


def lockout_username(request, credentials=None) -> str:
    """The name axes counts failures under: the account's, or a pseudo-account when no account has it."""
    name = (credentials or {}).get("username") if credentials else getattr(request, "POST", {}).get("username")
    if name in PER_ADDRESS:
        return name
    known = getattr(request, "_lockout_known", None)
    if known is None:
        known = request._lockout_known = {}
    if name not in known:
        model = get_user_model()
        known[name] = bool(name) and model._default_manager.filter(**{model.USERNAME_FIELD: name}).exists()
    return name if known[name] else UNKNOWN_ACCOUNT


def failure_limit(request, credentials=None) -> int:
    if lockout_username(request, credentials) in PER_ADDRESS:
        return settings.LOGIN_ADDRESS_FAILURE_LIMIT
    return settings.LOGIN_FAILURE_LIMIT


def client_address(request) -> str | None:
    """The caller's address: REMOTE_ADDR, or behind a reverse proxy (BEHIND_PROXY) the last X-Forwarded-For
    entry, the one the proxy added; entries before it are whatever the client chose to send."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.BEHIND_PROXY and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")


class AuditClientAddressMiddleware:
    """Right after auditlog's middleware: records the client_address() instead of the first X-Forwarded-For
    entry auditlog takes on trust, so a client cannot write someone else's address into the audit trail."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            auditlog_value.get()["remote_addr"] = client_address(request)
        except LookupError:
            pass
        return self.get_response(request)


def lockout_probe(request) -> HttpRequest:
    """What axes may see of an API request: the client and the path, not the query string or body (a
    query names patients)."""
    probe = HttpRequest()
    probe.META = {key: request.META[key] for key in ("REMOTE_ADDR", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR")
                  if key in request.META}
    probe.META["PATH_INFO"] = request.path_info
    probe.method, probe.path, probe.path_info = request.method, request.path, request.path_info
    return probe


class LockedOut(exceptions.Throttled):
    default_detail = "Too many failed logins or bad API tokens from this address; try again later."


def set_audit_actor(user) -> None:
    """Make `user` the actor of the model changes this request records (auditlog's request context)."""
    try:
        context = auditlog_value.get()
    except LookupError:  # no auditlog middleware around this call (e.g. a test calling a view directly)
        return
    context["actor"] = user


class AuditedTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None  # no token offered: nothing to count, the session may still authenticate
        probe = lockout_probe(request._request)
        try:
            user, token = super().authenticate(request)
        except exceptions.AuthenticationFailed:
            if AxesProxyHandler.is_locked(probe, TOKEN_CREDENTIALS):
                raise LockedOut() from None
            user_login_failed.send(sender=type(self), credentials=TOKEN_CREDENTIALS, request=probe)
            if getattr(probe, "axes_locked_out", False):  # this failure reached the limit, as a login form's would
                raise LockedOut() from None
            raise
        set_audit_actor(user)
        return user, token


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' check before any password is tried, for logins that come with a request (the admin's
    form). A call without one (the test client's login(), a shell) is not a login from the network; axes
    itself would refuse it with an error."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
