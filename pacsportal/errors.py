"""Django's own 400 (a SuspiciousOperation raised while reading a request: too many form fields or files, a
body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host header) answered on API routes in the API's error shape,
naming the limit, instead of Django's HTML page; elsewhere Django's page as before."""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import JsonResponse
from django.views import defaults

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
