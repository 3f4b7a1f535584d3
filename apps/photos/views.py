"""The phone page: one template and a small script that posts to /api/studies. The manifest and the
service worker are served from /photos/ so the installed app's scope is the page; they hold no
patient data and need no login (a browser fetches a manifest without cookies)."""
import json

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.views import LoginView
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse, reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.photos.access import SEND_PHOTOS, sendable_servers
from apps.photos.models import Backend, PhotoSettings
from apps.photos.uploads import MAX_PHOTOS

SHELL_FILES = ["photos/app.css", "photos/app.js", "photos/icons/icon-192.png", "photos/icons/icon-512.png"]
SHELL_VERSION = "1"  # bump when the shell changes, so installed apps drop the old cache


class PhotoLoginView(LoginView):
    template_name = "photos/login.html"
    next_page = reverse_lazy("photos:page")


@never_cache
@login_required(login_url=reverse_lazy("photos:login"))
@permission_required(SEND_PHOTOS, raise_exception=True)
def photo_page(request):
    photo_settings = PhotoSettings.load()
    servers = [{"name": s.name, "description": s.description}
               for s in sendable_servers(request.user)
               if photo_settings.backend == Backend.CSTORE or s.dicomweb_url]
    config = {
        "destination": photo_settings.destination.name if photo_settings.destination else "",
        "servers": servers,
        "maxUploadMb": photo_settings.max_upload_mb,
        "maxPhotos": MAX_PHOTOS,
        "themeDark": photo_settings.theme_dark,
        "studiesUrl": "/api/studies",
        "serviceWorker": reverse("photos:sw"),
    }
    return render(request, "photos/page.html", {"config": config,
                                                "theme": "dark" if photo_settings.theme_dark else "light"})


@require_GET
def manifest(request):
    body = {
        "name": "PACS Portal Photos",
        "short_name": "Photos",
        "description": "Take photos and send them to the PACS as DICOM.",
        "start_url": reverse("photos:page"),
        "scope": reverse("photos:page"),
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#111827",
        "theme_color": "#111827",
        "icons": [{"src": static(f"photos/icons/icon-{n}.png"), "sizes": f"{n}x{n}", "type": "image/png",
                   "purpose": "any maskable"} for n in (192, 512)],
    }
    return JsonResponse(body, content_type="application/manifest+json")


@require_GET
def service_worker(request):
    """Caches the shell (style, script, icons) and nothing else; never the page, never /api/."""
    shell = [static(f) for f in SHELL_FILES]
    script = render(request, "photos/sw.js", {"shell": json.dumps(shell), "version": SHELL_VERSION,
                                              "debug": settings.DEBUG}).content
    response = HttpResponse(script, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"  # browsers must see a new worker when the shell changes
    return response
