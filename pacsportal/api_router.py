"""Every app's API routes under /api/. Each app owns its urls in apps/<app>/urls.py."""
from django.urls import include, path
from rest_framework.routers import SimpleRouter


class ApiRouter(SimpleRouter):
    """Routes that answer with or without the trailing slash (`/api/servers/LK/studies?...` as in the
    contract, and `/api/servers/LK/echo/`), so scripts never meet a redirect that drops a POST body."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"

api_urlpatterns = [
    path("", include("apps.servers.urls")),
    path("", include("apps.jobs.urls")),
    path("", include("apps.retrieval.urls")),
    path("", include("apps.photos.urls")),
    path("", include("apps.sending.urls")),
    path("", include("apps.delivery.urls")),
    path("", include("apps.imports.urls")),
    path("", include("apps.projects.urls")),
    path("", include("apps.notify.urls")),
]
