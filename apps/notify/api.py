"""GET/PUT /api/me/notifications: a user's own e-mail setting, {"job_ended": bool, "email": "…"}.
`job_ended` asks for a message whenever one of their jobs ends (a job started with "notify": true gets
one anyway). The address is the account's, set by an administrator; asking without one is refused."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from apps.notify.models import MailPreference

FIELDS = {"job_ended"}


def _body(user) -> dict:
    return {"job_ended": MailPreference.wants_job_mail(user), "email": user.email}


@extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
@api_view(["GET", "PUT", "PATCH"])
@permission_classes([IsAuthenticated])
def my_notifications(request):
    if request.method == "GET":
        return Response(_body(request.user))
    data = request.data if isinstance(request.data, dict) else None
    if data is None:
        return Response({"error": 'The body must be a JSON object: {"job_ended": true}.'}, status=400)
    unknown = sorted(set(data) - FIELDS - {"email"})
    if unknown:
        return Response({name: ["Unknown field: the setting has only job_ended."] for name in unknown}, status=400)
    wanted = data.get("job_ended")
    if not isinstance(wanted, bool):
        return Response({"job_ended": ["Must be true or false."]}, status=400)
    if "email" in data and data["email"] != request.user.email:
        return Response({"email": ["Read-only: an administrator sets the account's address."]}, status=400)
    if wanted and not request.user.email:
        return Response({"job_ended": ["Your account has no e-mail address; ask an administrator to add one."]},
                        status=400)
    MailPreference.objects.update_or_create(user=request.user, defaults={"job_ended": wanted})
    return Response(_body(request.user))
