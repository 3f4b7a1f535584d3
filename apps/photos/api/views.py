"""The photo API with the phone page's contract: POST /api/studies, POST /api/pacs/echo,
GET/PUT /api/settings, GET /api/settings/info. Errors are {"status": "error", "code", "message"};
authentication and permissions are the portal's (token or session login)."""
import logging

from django.conf import settings
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit import record
from apps.jobs.api.views import JobViewSetMixin
from apps.jobs.runner import run_inline
from apps.photos import echo, intake
from apps.photos.access import CHANGE_SETTINGS, SEND_PHOTOS, VIEW_SETTINGS, requires
from apps.photos.api.serializers import SETTINGS_KEYS, PhotoSettingsSerializer, PhotoUploadSerializer
from apps.photos.models import PhotoSettings, PhotoUpload
from apps.photos.uploads import PhotoUploadHandler
from apps.servers.models import ServerAccessDenied

log = logging.getLogger("apps.photos")
HTTP_STATUS = {"VALIDATION_ERROR": 400, "FORBIDDEN": 403, "PACS_REJECTED": 502, "PACS_TIMEOUT": 504,
               "INTERNAL_ERROR": 500}


def error(code: str, message: str, http_status: int | None = None, **extra) -> Response:
    return Response({"status": "error", "code": code, "message": message, **extra},
                    status=http_status or HTTP_STATUS[code])


class PhotoApiView(APIView):
    """DRF's own refusals (not logged in, no permission, bad JSON) in the contract's error shape."""

    CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 405: "METHOD_NOT_ALLOWED",
             415: "VALIDATION_ERROR", 429: "RATE_LIMITED"}

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, exceptions.APIException):
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            response.data = {"status": "error", "code": self.CODES.get(response.status_code, "ERROR"),
                             "message": detail}
        return response


class StudiesView(PhotoApiView):
    """Upload photos (multipart `patientId`, `images[]`, ...) and store them as one Secondary Capture
    series; answers when the PACS has answered."""

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [requires(SEND_PHOTOS, why="You may not send photos to a PACS; ask an administrator "
                                                    "for the 'send photos' permission.")]

    @cached_property
    def photo_settings(self) -> PhotoSettings:
        return PhotoSettings.load()  # fresh on every upload: changes need no restart

    def initialize_request(self, request, *args, **kwargs):
        # before anything reads the body (the session login's CSRF check reads it too)
        if request.method == "POST":
            request.upload_handlers = [PhotoUploadHandler(request, lambda: self.photo_settings.max_upload_mb * 2**20)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": OpenApiTypes.OBJECT}, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        photo_settings = self.photo_settings
        data, files = request.data, request.FILES
        refused = getattr(request._request, "photo_upload_refused", None)
        try:
            if refused:
                raise intake.Refused(f"images[]: {refused}")
            submission = intake.read_submission(request.user, data, files, photo_settings)
        except (intake.Refused, ServerAccessDenied) as exc:
            record(request.user, "photos.refused", "photos", reason=str(exc), patient_id=data.get("patientId", ""))
            return error("FORBIDDEN" if isinstance(exc, ServerAccessDenied) else "VALIDATION_ERROR", str(exc))
        upload = intake.create_upload(request.user, submission, photo_settings)
        item = run_inline(upload, user=request.user).items.get()  # the sender waits for the answer
        instances = item.result.get("instances", [])
        stored = sum(1 for i in instances if i["status"] == "success")
        record(request.user, "photos.uploaded", upload, patient_id=upload.patient_id, server=upload.server_name,
               backend=upload.backend, photos=len(instances), stored=stored, status=item.status)
        log.info("photo upload %s: %d of %d photos stored on %s (%s)", upload.pk, stored, len(instances),
                 upload.server_name, item.status)
        body = {"studyInstanceUID": upload.study_instance_uid, "seriesInstanceUID": upload.series_instance_uid,
                "instances": [{"index": i["index"], "sopInstanceUID": i["sopInstanceUID"], "status": i["status"],
                               **({"message": i["message"]} if i["status"] != "success" else {})}
                              for i in instances],
                "pacs": echo.describe(upload.dicom_server, upload.backend), "upload": upload.pk}
        if item.status == "succeeded":
            return Response({"status": "success", **body})
        code = item.result.get("code") or ("PACS_TIMEOUT" if item.status == "timed_out" else "INTERNAL_ERROR")
        return error(code, item.error, **body)


class PacsEchoView(PhotoApiView):
    """C-ECHO the destination (or a DICOMweb search for a DICOMweb destination). The optional body
    {calledAET, host, port} or {server} must name a configured server: the portal calls no other."""

    parser_classes = [JSONParser, FormParser]
    permission_classes = [requires(SEND_PHOTOS)]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        photo_settings = PhotoSettings.load()
        try:
            server = echo.pick_server(request.user, request.data, photo_settings)
        except ServerAccessDenied as exc:
            return error("FORBIDDEN", str(exc))
        except intake.Refused as exc:
            return error("VALIDATION_ERROR", str(exc))
        outcome = echo.check(server, photo_settings)
        record(request.user, "server.echo", server, ok=outcome["ok"], error=outcome.get("message"),
               backend=photo_settings.backend, via="photos")
        if outcome["ok"]:
            return Response({"status": "success", **outcome})
        return error(outcome.pop("code"), outcome.pop("message"), **outcome)


class SettingsView(PhotoApiView):
    """GET: {"settings": {...}}. PUT: a partial "settings" object; staff with the change permission only."""

    parser_classes = [JSONParser]

    def get_permissions(self):
        if self.request.method == "PUT":
            return [requires(CHANGE_SETTINGS, staff=True, why="Only staff with the 'change photo settings' "
                                                              "permission may change the photo settings.")()]
        return [requires(VIEW_SETTINGS)()]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"settings": PhotoSettingsSerializer(PhotoSettings.load()).data})

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def put(self, request):
        given = request.data.get("settings") if isinstance(request.data, dict) else None
        if not isinstance(given, dict):
            return error("VALIDATION_ERROR", 'Send {"settings": {...}} with the keys to change.')
        unknown = sorted(set(given) - set(SETTINGS_KEYS))
        if unknown:
            return error("VALIDATION_ERROR", f"Unknown setting(s): {', '.join(unknown)}. Known: "
                                             f"{', '.join(SETTINGS_KEYS)}.")
        current = PhotoSettings.load()
        serializer = PhotoSettingsSerializer(current, data={SETTINGS_KEYS[k]: v for k, v in given.items()},
                                             partial=True)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            key = next((k for k, f in SETTINGS_KEYS.items() if f == field), field)
            return error("VALIDATION_ERROR", f"{key}: {' '.join(str(p) for p in problems)}")
        serializer.save()
        record(request.user, "photos.settings_changed", current, changed=sorted(given))
        return Response({"settings": serializer.data})


class SettingsInfoView(PhotoApiView):
    """What the phone app needs to know about the destination: anyone who may send photos may ask."""

    permission_classes = [requires(SEND_PHOTOS)]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"pacsBackend": PhotoSettings.load().backend, "callingAET": settings.DICOM_AE_TITLE})


class PhotoUploadViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         viewsets.GenericViewSet):
    """Past photo uploads: the caller's own (everyone's with "view all jobs"), with each photo's status."""

    serializer_class = PhotoUploadSerializer
    queryset = PhotoUpload.objects.prefetch_related("items")
