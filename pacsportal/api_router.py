"""Every app's API routes under /api/. Each app owns its urls in apps/<app>/urls.py."""
from django.urls import include, path

api_urlpatterns = [
    path("", include("apps.servers.urls")),
    path("", include("apps.jobs.urls")),
]
