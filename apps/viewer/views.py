"""The viewer at /viewer/: OHIF's files (installed by `make viewer` into VIEWER_ROOT, apps/viewer/site.py),
its configuration pointed at the portal's own /dicomweb/, all behind a login. Every answer carries a
Content-Security-Policy that lets the page reach its own origin only."""
import json
import mimetypes
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_safe
from django.views.static import serve

mimetypes.add_type("application/wasm", ".wasm")  # browsers compile WebAssembly streamed only with this type

# Same origin only. 'wasm-unsafe-eval' lets the image decoders (WebAssembly) compile; inline styles are how
# React positions the viewer's panels; blob: workers are how the image loader starts some of its workers.
CSP = "; ".join([
    "default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "font-src 'self' data:", "connect-src 'self'", "worker-src 'self' blob:",
    "object-src 'none'", "base-uri 'self'", "form-action 'self'", "frame-ancestors 'self'",
])
# The mode OHIF opens a study in (its route under /viewer/).
MODE_ROUTE = "viewer"
NARROW = "(max-width: 640px)"


def app_config(dicomweb_root: str) -> dict:
    """OHIF's window.config: one DICOMweb data source, the portal's; no study list, tour or dialogs."""
    return {
        "routerBasename": "/viewer",
        "showStudyList": False,
        "extensions": [], "modes": [],
        "customizationService": {"ohif.tours": {"$set": []}},
        "investigationalUseDialog": {"option": "never"},
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "maxNumberOfWebWorkers": 2,
        "defaultDataSourceName": "portal",
        "dataSources": [{
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": "portal",
            "configuration": {
                "friendlyName": "PACS Portal", "name": "portal",
                "qidoRoot": dicomweb_root, "wadoRoot": dicomweb_root, "wadoUriRoot": dicomweb_root,
                "qidoSupportsIncludeField": False, "imageRendering": "wadors", "thumbnailRendering": "wadors",
                "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": True,
                "staticWado": False, "singlepart": "bulkdata,video",
                "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                "omitQuotationForMultipartRequest": True,
            },
        }],
    }


def secured(response):
    response["Content-Security-Policy"] = CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "same-origin"
    return response


@require_safe
@login_required
def config_js(request):
    body = (f"window.config = {json.dumps(app_config('/dicomweb'))};\n"
            # On a phone the viewport takes the whole width: the series panels would leave it a sliver.
            f"var narrow = window.matchMedia({json.dumps(NARROW)}).matches;\n"
            "if (narrow) {\n"
            "  Object.assign(window.config.customizationService,\n"
            "                {leftPanels: {$set: []}, rightPanels: {$set: []}});\n}\n"
            # The portal's name, back to the admin, where OHIF's logo was (none on a phone: the tools need the room).
            "window.config.whiteLabeling = {createLogoComponentFn: function (React) {\n"
            "  return narrow ? React.createElement('span')\n"
            "                : React.createElement('a', {href: '/admin/', className: 'text-primary-light ml-3'},\n"
            "                                      'PACS Portal');\n}};\n")
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return secured(response)


def _inside(root: Path, path: str) -> bool:
    """A regular file of the site, also once every symlink on the way is followed."""
    try:
        resolved = (root / path).resolve()
    except (OSError, ValueError):
        return False
    return resolved.is_relative_to(root.resolve()) and resolved.is_file()


def _index(root: Path):
    index = root / "index.html"
    if not index.is_file():
        return secured(HttpResponse("The viewer is not installed on this portal (`make viewer` installs it).\n",
                                    status=503, content_type="text/plain; charset=utf-8"))
    response = HttpResponse(index.read_bytes(), content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return secured(response)


@require_safe
@login_required
def page(request, path: str = ""):
    """/viewer/?StudyInstanceUIDs=… opens the study in OHIF's viewer route; a file of the site is served as
    it is; any other path without a file extension is one of OHIF's own routes (its index.html)."""
    root = Path(settings.VIEWER_ROOT)
    if not path and "StudyInstanceUIDs" in request.GET:
        return HttpResponseRedirect(f"/viewer/{MODE_ROUTE}?{urlencode(request.GET, doseq=True)}")
    if path and _inside(root, path):
        # The .gz made at install (apps/viewer/site.py); serve() names its type and its gzip encoding.
        packed = "gzip" in request.headers.get("Accept-Encoding", "") and _inside(root, f"{path}.gz")
        response = serve(request, f"{path}.gz" if packed else path, document_root=root)
        response["Cache-Control"] = "private, max-age=86400"
        response["Vary"] = "Accept-Encoding, Cookie"
        return secured(response)
    if "." in path.rsplit("/", 1)[-1]:
        return secured(HttpResponse(f"No file {path} in the viewer.\n", status=404,
                                    content_type="text/plain; charset=utf-8"))
    return _index(root)
