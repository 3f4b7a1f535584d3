"""Django's own 400 (a SuspiciousOperation raised while reading a request: too many form fields or files, a
body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host header) answered on API routes in the API's error shape,
naming the limit, instead of Django's HTML page; elsewhere Django's page as before."""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import JsonResponse
from django.views import defaults

from apps.photos.models import PhotoSettings
from apps.photos.uploads import MAX_PHOTOS

PHOTO_ROUTES = ("/api/studies", "/api/pacs/", "/api/settings")  # the phone app's contract: its own shape


def why(exception) -> str:
    if isinstance(exception, TooManyFieldsSent):
        return (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields "
                "(DATA_UPLOAD_MAX_NUMBER_FIELDS); send fewer.")
    if isinstance(exception, TooManyFilesSent):
        return (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files "
                "(DATA_UPLOAD_MAX_NUMBER_FILES); send them in several requests.")
    if isinstance(exception, RequestDataTooBig):
        return (f"The request's form data is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20} MB "
                "(DATA_UPLOAD_MAX_MEMORY_SIZE); send files as files, or in several requests.")
    return f"Bad request: {exception}" if str(exception) else "Bad request."


def bad_request(request, exception, template_name=defaults.ERROR_400_TEMPLATE_NAME):
    path = request.path_info
    if not path.startswith("/api/"):
        return defaults.bad_request(request, exception, template_name)
    message = why(exception)
    if path.startswith(PHOTO_ROUTES):
        return JsonResponse({"status": "error", "code": "VALIDATION_ERROR", "message": message}, status=400)
    return JsonResponse({"detail": message}, status=400)


def chunked_refusal(path: str) -> str:
    if path.startswith("/api/studies"):
        return (f"images[]: the upload was sent without a Content-Length (chunked), so its size cannot be "
                f"checked before it is read; send it with its length, at most {MAX_PHOTOS} photos of "
                f"{PhotoSettings.load().max_upload_mb} MB each.")
    return ("The request body was sent without a Content-Length (chunked transfer encoding), which this "
            "server cannot read; send it with its length.")


class RefuseChunkedBodies:
    """A body sent in chunks, without a Content-Length, reaches Django as an empty body (Django reads
    CONTENT_LENGTH bytes, and the WSGI servers do not set it for chunked requests): an API call would be
    answered as if its fields were missing ("patientId is required"). On /api/ it is refused, before the
    body is read, with the reason: 411, or the photo routes' 400 VALIDATION_ERROR."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and request.path_info.startswith("/api/"):  # (a Content-Length beside it does not count)
            message = chunked_refusal(request.path_info)
            if request.path_info.startswith(PHOTO_ROUTES):
                response = JsonResponse({"status": "error", "code": "VALIDATION_ERROR", "message": message}, status=400)
            else:
                response = JsonResponse({"detail": message}, status=411)
            return response  # (a WSGI app may not set Connection; the server closes what it did not read)
        return self.get_response(request)
