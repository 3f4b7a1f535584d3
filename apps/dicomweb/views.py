"""The DICOMweb routes (PS3.18) under /dicomweb/: thin views over qido.py, wado.py, rendered.py and
stow.py. Token or session authentication as the API; what a user may see is access.visible; errors
answer {"detail": ...} naming the parameter and the rule, never an HTML page."""
from __future__ import annotations

import json
import logging
import socket

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from rest_framework import permissions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from apps.audit import record
from apps.delivery.models import Upload
from apps.dicom import multipart, multipart_reader
from apps.dicom.paths import NotRegularFile
from apps.dicom.render import RenderError
from apps.dicomweb import qido, rendered, stow, wado
from apps.dicomweb.access import visible
from apps.jobs import diskspace

log = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
STORE_PERMISSION = "catalog.store_dicomweb"


class AnyAccept(BaseContentNegotiation):
    """DICOMweb negotiates its own media types; errors are JSON whatever the Accept header says."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return JSONRenderer(), "application/json"


class DicomWebThrottle(UserRateThrottle):
    scope = "dicomweb"  # a viewer asks for every frame: its own, larger budget


class DicomWebView(APIView):
    permission_classes = [permissions.IsAuthenticated]
    content_negotiation_class = AnyAccept
    throttle_classes = [DicomWebThrottle]
    parser_classes = []
    schema = None

    def url(self, study, series=None, sop=None):
        path = f"/dicomweb/studies/{study}" + (f"/series/{series}" if series else "") + (
            f"/instances/{sop}" if sop else "")
        return self.request.build_absolute_uri(path)

    def rows(self, study, series=None, sop=None):
        found = visible(self.request.user).filter(study_instance_uid=study)
        if series:
            found = found.filter(series_instance_uid=series)
        if sop:
            found = found.filter(sop_instance_uid=sop)
        return found.order_by("series_instance_uid", "id")


def direct_socket(request):
    """The client's socket when the server hands it over (gunicorn) and a body is due (not HEAD): WADO-RS
    then sends the files with sendfile(2). None elsewhere (the development server, tests' clients)."""
    sock = request.META.get("gunicorn.socket")
    if request.method != "GET" or not isinstance(sock, socket.socket) or sock.gettimeout() == 0.0:
        return None
    return sock


def problem(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def dicom_json(data, status=200, warnings=()) -> HttpResponse:
    """DICOM JSON; `warnings` become one Warning header (PS3.18 8.10.3: code 299, the text quoted)."""
    response = HttpResponse(json.dumps(data, separators=(",", ":")), status=status, content_type=DICOM_JSON)
    if warnings:
        # the texts may quote a client's bytes: printable ASCII only, no quote ending the text early
        printable = ("".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)[:300] for text in warnings)
        response["Warning"] = ", ".join(f'299 pacsportal "{text}"' for text in printable)
    return response


class Unknown(DicomWebView):
    """A path no route matched (a UID with letters, a resource this portal does not serve): a DICOMweb client
    gets the JSON 404 of every other error, after the same login check, not Django's HTML page."""

    def get(self, request):
        return problem(404, "no such DICOMweb resource: this portal serves studies, series, instances, and below "
                            "studies/{uid} their series, instances, metadata, frames, rendered and thumbnail")


class Search(DicomWebView):
    level = "studies"

    def get(self, request, study=None, series=None):
        try:
            search = qido.parse(request.GET, self.level)
        except qido.SearchError as exc:
            return problem(400, str(exc))
        rows = visible(request.user)
        if study:
            rows = rows.filter(study_instance_uid=study)
        if series:
            rows = rows.filter(series_instance_uid=series)
        found = qido.run(search, rows, self.url)
        if not found:
            response = HttpResponse(status=204)
            return response
        return dicom_json(found, warnings=search.warnings)


class Studies(Search):
    level = "studies"

    def post(self, request, study=None):
        return store(self, request, study)


class StudySeries(Search):
    level = "series"


class Instances(Search):
    level = "instances"


class Retrieve(DicomWebView):
    """WADO-RS of a study, a series or an instance: its instances as they are stored, streamed."""

    def get(self, request, study, series=None, sop=None):
        files = wado.servable(self.rows(study, series, sop))
        if not files:
            return problem(404, "no such " + ("instance" if sop else "series" if series else "study"))
        record(request.user, "dicomweb.retrieved", f"study:{study}", series=series or "", instances=len(files),
               resource="instances")
        return wado.instances_response(files, sock=direct_socket(request))

    def post(self, request, study, series=None, sop=None):
        if series or sop:
            return problem(405, "STOW-RS stores into /dicomweb/studies or /dicomweb/studies/{study} only")
        return store(self, request, study)


class Metadata(DicomWebView):
    def get(self, request, study, series=None, sop=None):
        files = wado.servable(self.rows(study, series, sop))
        if not files:
            return problem(404, "no such " + ("instance" if sop else "series" if series else "study"))
        answers, warnings = wado.metadata(files)
        return dicom_json(answers, warnings=warnings)


class Frames(DicomWebView):
    def get(self, request, study, series, sop, frames):
        try:
            numbers = [int(n) for n in frames.split(",")]
        except ValueError:
            return problem(400, f"frames '{frames[:40]}' must be frame numbers separated by commas")
        files = wado.servable(self.rows(study, series, sop)[:1])
        if not files:
            return problem(404, "no such instance")
        try:
            response = wado.frames(files[0][1], numbers)
        except wado.NoSuchFrame as exc:
            return problem(404, str(exc))
        except wado.FrameError as exc:
            return problem(422, f"the instance's frames cannot be read: {exc}")
        except (OSError, NotRegularFile):
            return problem(404, "no such instance")
        record(request.user, "dicomweb.retrieved", f"study:{study}", series=series, instances=1,
               resource="frames")
        return response


class Rendered(DicomWebView):
    thumbnail = False

    def get(self, request, study, series=None, sop=None, frames=None):
        files = wado.servable(self.rows(study, series, sop)[:1] if sop else
                              self.rows(study, series).order_by("series_instance_uid", "instance_number", "id")[:1])
        if not files:
            return problem(404, "no such " + ("instance" if sop else "series" if series else "study"))
        try:
            frame = int(frames.split(",")[0]) if frames else 1
        except ValueError:
            return problem(400, f"frames '{frames[:40]}' must be a frame number")
        media = rendered.media_type(request.headers.get("Accept", ""))
        try:
            image = rendered.render_frame(files[0][1], request.GET, frame=frame, thumbnail=self.thumbnail,
                                          media=media)
        except rendered.RenderRequestError as exc:
            return problem(400, str(exc))
        except RenderError as exc:
            return problem(422, f"the instance cannot be rendered: {exc}")
        record(request.user, "dicomweb.retrieved", f"study:{study}", series=series or "", instances=1,
               resource="thumbnail" if self.thumbnail else "rendered")
        return HttpResponse(image, content_type=media)


class Thumbnail(Rendered):
    thumbnail = True


def store(view, request, study=None):
    """STOW-RS: the body checked part by part; 413 before reading a body over DICOMWEB_STOW_MAX_BYTES."""
    if not request.user.has_perm(STORE_PERMISSION):
        return problem(403, "storing by DICOMweb needs the permission 'Can store instances by DICOMweb'")
    main, params = multipart.parse_media_type(request.headers.get("Content-Type", ""))
    if main != "multipart/related" or params.get("type", "application/dicom").lower() != "application/dicom":
        return problem(415, 'STOW-RS takes multipart/related; type="application/dicom" bodies')
    if not request.headers.get("Content-Length"):
        return problem(411, "STOW-RS needs a Content-Length (a chunked body is not taken)")
    try:
        length = int(request.headers["Content-Length"])
    except ValueError:
        return problem(400, "the Content-Length is not a number")
    limit = settings.DICOMWEB_STOW_MAX_BYTES
    if length > limit:
        return problem(413, f"the body ({length} bytes) is over the limit of {limit} bytes (DICOMWEB_STOW_MAX_MB)")
    if length <= 0:
        return problem(400, "the body is empty")
    short = diskspace.shortage("downloads")
    if short is not None:  # as the tus receiving end: come back later, nothing was read
        response = problem(507, f"the portal is short of disk space: {short.describe()}; nothing was stored")
        response["Retry-After"] = "60"
        return response
    # read as it arrives (request.read: gunicorn's body reader, never request.body), each part to disk
    try:
        parts = multipart_reader.read_parts(request, params.get("boundary", ""), length)
        outcome = stow.store_parts(parts, Upload.received_folder(request.user) / "dicomweb", request.user,
                                   study=study)
    except multipart.MultipartError as exc:
        return problem(400, f"the body is not multipart/related: {exc}")
    if not outcome.parts:
        return problem(400, "the body holds no part")
    record(request.user, "dicomweb.stored", f"studies:{','.join(outcome.studies)[:200]}",
           stored=len(outcome.stored), failed=len(outcome.failed))
    status, body = stow.answer(outcome, view.url)
    return dicom_json(body, status=status, warnings=[f["why"] for f in outcome.failed][:20])
