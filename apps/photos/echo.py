"""Is the photo destination reachable? C-ECHO for C-STORE, a one-study DICOMweb search for STOW-RS,
both bounded by the photo settings' timeout."""
from __future__ import annotations

import time
from dataclasses import replace

from apps.dicom import dicomweb, dimse
from apps.dicom.errors import DicomError
from apps.photos.intake import Refused, named_server
from apps.photos.models import Backend
from apps.photos.sending import error_code
from apps.servers.models import DicomServer, local_ae


def pick_server(user, body, photo_settings):
    """The server the echo body names ({server} or {calledAET, host, port}), else the destination."""
    body = body if hasattr(body, "get") else {}
    name, host, port = body.get("server"), body.get("host"), body.get("port")
    if name:
        return named_server(user, name)
    if host or port:
        try:
            matches = DicomServer.objects.filter(host=str(host or "").strip(), port=int(port))
        except (TypeError, ValueError):
            raise Refused(f"port: {port!r} is not a port number.") from None
        if body.get("calledAET"):
            matches = matches.filter(ae_title=str(body["calledAET"]).strip())
        server = matches.first()
        if server is None:
            raise Refused(f"No configured DICOM server is {body.get('calledAET') or '?'}@{host}:{port}; the portal "
                          "only talks to servers an administrator has added.")
        server.check_access(user, "send")
        return server
    if photo_settings.destination is None:
        raise Refused("server: no destination is configured in the photo settings.")
    photo_settings.destination.check_access(user, "send")
    return photo_settings.destination


def describe(server, backend: str) -> dict:
    """Where the photos went, as the seed's "pacs" object (plus the server's portal name)."""
    if server is None:
        return {}
    if backend == Backend.DICOMWEB:
        return {"server": server.name, "url": server.dicomweb_url}
    return {"server": server.name, "calledAET": server.ae_title, "host": server.host, "port": server.port}


def check(server, photo_settings) -> dict:
    seconds = float(photo_settings.timeout_seconds)
    backend = photo_settings.backend
    result = {"backend": backend, "pacs": describe(server, backend)}
    started = time.monotonic()
    try:
        if backend == Backend.DICOMWEB:
            endpoint = server.as_dicomweb()
            if endpoint is None:
                return {**result, "ok": False, "code": "VALIDATION_ERROR",
                        "message": f"Server {server.name} has no DICOMweb URL."}
            dicomweb.qido(replace(endpoint, timeout=seconds, verify_tls=photo_settings.dicomweb_verify_tls),
                          "studies", {"limit": "1"})
        else:
            peer = replace(server.as_peer(), connect_timeout=seconds, query_timeout=seconds)
            dimse.echo(peer, local_ae())
    except DicomError as exc:
        return {**result, "ok": False, "code": error_code(exc), "message": str(exc)}
    return {**result, "ok": True, "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            "callingAET": local_ae().ae_title}
