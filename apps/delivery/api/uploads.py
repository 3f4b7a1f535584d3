"""The receiving end: tus 1.0.0 (core, creation, creation-with-upload, checksum sha1 and crc32, termination,
expiration) at /api/uploads/, behind the API's token or session login and the `delivery.add_upload`
permission. Each user sees only their own uploads. The answer that completes an upload carries its
outcome (Upload-State, Upload-Verified, Upload-Files, Upload-Sha1); GET on an upload (outside tus)
answers it as JSON. That is what a sender reads before it deletes anything. A zip is unpacked by a worker:
until then its state is "unpacking". Discovery (OPTIONS) answers anyone: a sender checks that it talks
to a tus server before it sends a token."""
import base64
import binascii
import logging
import uuid

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from apps.audit import record
from apps.delivery.bundle import CHUNK_CHECKSUMS, BundleRefused
from apps.delivery.models import Upload
from apps.delivery.models.upload import ChunkRefused

log = logging.getLogger("apps.delivery")
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,checksum,termination,expiration"
OFFSET_STREAM = "application/offset+octet-stream"


class MayUpload(permissions.BasePermission):
    message = "This account may not upload deliveries (it needs the 'delivery.add_upload' permission)."

    def has_permission(self, request, view):
        if request.method == "OPTIONS":  # tus discovery says only what this portal speaks; a sender asks first
            return True
        return bool(request.user and request.user.is_authenticated and request.user.has_perm("delivery.add_upload"))


def tus_response(status: int, body=None, **headers) -> Response:
    response = Response(body, status=status)
    response["Tus-Resumable"] = TUS_VERSION
    for name, value in headers.items():
        response[name.replace("_", "-")] = str(value)
    return response


def refuse(status: int, message: str, **headers) -> Response:
    return tus_response(status, {"error": message}, **headers)


def parse_metadata(header: str) -> dict[str, str]:
    """`key base64value,key2 base64value2` (a key may come without a value)."""
    values = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, encoded = pair.partition(" ")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode() if encoded else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from None
    return values


class Refused(Exception):
    """Stops a tus request with the protocol's answer."""

    def __init__(self, status: int, message: str, **headers):
        super().__init__(message)
        self.response = refuse(status, message, **headers)


def expiry(upload: Upload) -> dict:
    if upload.state != Upload.State.RECEIVING:
        return {}
    return {"Upload_Expires": http_date(upload.expires_at.timestamp())}


class TusView(APIView):
    permission_classes = [MayUpload]
    # Each chunk is a request: uploads have their own, higher rate (UPLOAD_RATE_USER), not the API's.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "uploads"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # login and permission first
        if request.method not in ("OPTIONS", "GET") and request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise Refused(412, f"Tus-Resumable must be {TUS_VERSION}.", Tus_Version=TUS_VERSION)

    def handle_exception(self, exc):
        if isinstance(exc, Refused):
            return exc.response
        return super().handle_exception(exc)

    def receive(self, request, upload: Upload, offset: int) -> dict:
        """Append the request body at `offset`; the answer's headers. When this completed the upload,
        they carry its outcome (Upload-State, Upload-Verified: bytes whose chunk sha1 matched,
        Upload-Files, and Upload-Sha1 of the whole file when not every byte was verified)."""
        raw_count = request.headers.get("Content-Length", "")
        if not raw_count.isdigit():
            raise Refused(400, "Content-Length (a whole number) is required.")
        checksum = None
        if "Upload-Checksum" in request.headers:
            algorithm, _, value = request.headers["Upload-Checksum"].strip().partition(" ")
            if algorithm.lower() not in CHUNK_CHECKSUMS or not value:
                raise Refused(400, "Upload-Checksum must be '<algorithm> <base64 digest>' with an algorithm of "
                                   f"{', '.join(sorted(CHUNK_CHECKSUMS))}.")
            checksum = (algorithm.lower(), value.strip())
        try:
            offset = upload.append(request._request, offset, int(raw_count), checksum)
        except ChunkRefused as exc:
            extra = {"Retry_After": 60} if exc.status in (503, 507) else {}
            raise Refused(exc.status, exc.message, Upload_Offset=upload.offset, **extra) from None
        headers = {"Upload_Offset": offset, **expiry(upload)}
        if upload.state != Upload.State.RECEIVING:
            upload.refresh_from_db()  # a worker may have unpacked it already
            record(request.user, "upload.received", upload, filename=upload.filename, bytes=upload.length,
                   state=upload.state, files=upload.files, error=upload.error)
            log.info("upload %s complete: %s, %d files", upload.id, upload.state, upload.files)
            headers.update(Upload_State=upload.state, Upload_Verified=upload.verified, Upload_Files=upload.files)
            if upload.sha1:
                headers["Upload_Sha1"] = upload.sha1
        return headers

    def options(self, request, *args, **kwargs):
        return tus_response(204, Tus_Version=TUS_VERSION, Tus_Extension=EXTENSIONS,
                            Tus_Max_Size=settings.UPLOAD_MAX_BYTES, Tus_Checksum_Algorithm=",".join(CHUNK_CHECKSUMS))


CHUNK_BODY = {OFFSET_STREAM: OpenApiTypes.BINARY}


@extend_schema(request=CHUNK_BODY, responses={201: None, 204: None},
               description="tus 1.0.0: OPTIONS discovers, POST creates (Upload-Length, Upload-Metadata filename).")
class UploadCollection(TusView):
    def post(self, request):
        raw_length = request.headers.get("Upload-Length", "")
        if not raw_length.isdigit():
            raise Refused(400, "Upload-Length (a whole number of bytes) is required; deferred lengths are not supported.")
        length = int(raw_length)
        if length > settings.UPLOAD_MAX_BYTES:
            raise Refused(413, f"Upload-Length {length} is over this portal's limit of {settings.UPLOAD_MAX_BYTES} bytes.")
        try:
            metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
            filename = Upload.check_filename(metadata.get("filename", ""))
        except (ValueError, BundleRefused) as exc:
            raise Refused(400, f"Upload-Metadata needs a safe relative 'filename': {exc}") from None
        upload = Upload(created_by=request.user, filename=filename, metadata=metadata, length=length)
        try:
            upload.check_destination()
        except BundleRefused as exc:
            raise Refused(409, f"filename {exc}; nothing is ever replaced.") from None
        upload.save()
        upload.data_path.parent.mkdir(parents=True, exist_ok=True)
        upload.data_path.touch()
        log.info("upload %s created: %d bytes by %s", upload.id, length, request.user.get_username())
        headers = {"Location": request.build_absolute_uri(reverse("upload-resource", args=[upload.id]))}
        if request.content_type.split(";")[0].strip() == OFFSET_STREAM:  # creation-with-upload
            headers.update(self.receive(request, upload, 0))
        elif length == 0:
            upload.finish()
        return tus_response(201, **{**expiry(upload), **headers})


@extend_schema(parameters=[OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)], request=CHUNK_BODY,
               responses={200: OpenApiTypes.OBJECT, 204: None},
               description="tus 1.0.0: HEAD offset, PATCH a chunk, DELETE terminates; GET the outcome as JSON.")
class UploadResource(TusView):
    def own(self, request, pk) -> Upload:
        try:
            return get_object_or_404(Upload, pk=uuid.UUID(pk), created_by=request.user)
        except ValueError:
            raise Http404("No such upload.") from None

    def upload(self, request, pk, *, receiving: bool = False) -> Upload:
        """The caller's own upload (another user's is 404); 410 once expired; 409 if it must still be
        receiving but is complete."""
        upload = self.own(request, pk)
        if upload.expired:
            raise Refused(410, "This upload expired.")
        if receiving and upload.state != Upload.State.RECEIVING:
            raise Refused(409, f"This upload is already complete ({upload.state}).")
        return upload

    def head(self, request, pk):
        upload = self.upload(request, pk)
        return tus_response(200, Upload_Offset=upload.offset, Upload_Length=upload.length, Cache_Control="no-store",
                            **expiry(upload))

    def patch(self, request, pk):
        if request.content_type.split(";")[0].strip() != OFFSET_STREAM:
            raise Refused(415, f"Content-Type must be {OFFSET_STREAM}.")
        upload = self.upload(request, pk, receiving=True)
        raw_offset = request.headers.get("Upload-Offset", "")
        if not raw_offset.isdigit():
            raise Refused(400, "Upload-Offset (a whole number) is required.")
        return tus_response(204, **self.receive(request, upload, int(raw_offset)))

    def delete(self, request, pk):
        self.upload(request, pk).discard()
        return tus_response(204)

    def get(self, request, pk):
        return tus_response(200, self.own(request, pk).outcome())
