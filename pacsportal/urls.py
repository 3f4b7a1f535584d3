from django.contrib import admin
from django.http import JsonResponse
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.dashboard import snapshot
from apps.core.health import portal_health
from apps.core.retention.views import retention_view
from pacsportal.api_router import api_urlpatterns
from pacsportal.metrics import metrics


def healthz(request):
    """Health probe, the one URL that needs no login: 200 {"status": "ok", ...}, or 503 naming what is down."""
    code, body = portal_health()
    return JsonResponse(body, status=code)


def dashboard(request):
    """The admin home page's figures, refreshed by core/dashboard.js: staff only, like the admin itself."""
    return JsonResponse(snapshot(request.user))


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", RedirectView.as_view(url=static("core/favicon.svg"), permanent=True)),
    path("metrics", metrics, name="metrics"),
    # Pages the admin guards, kept out of apps/core/admin_site.py: that module loads before any model.
    path("admin/dashboard.json", admin.site.admin_view(dashboard), name="dashboard"),
    path("admin/retention/", admin.site.admin_view(retention_view), name="retention"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include(api_urlpatterns)),
    path("photos/", include("apps.photos.page_urls")),
    path("dicomweb/", include("apps.dicomweb.urls")),
    path("viewer/", include("apps.viewer.urls")),
]

handler400 = "pacsportal.errors.bad_request"  # on /api/: JSON naming the limit, not Django's HTML page
