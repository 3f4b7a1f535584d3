"""Sending an upload's DICOM files through the DICOM layer: C-STORE in one association (TLS when the
server has it) or STOW-RS in one request, and what each outcome means for the sender."""
from __future__ import annotations

from dataclasses import replace

from django.conf import settings

from apps.dicom import dicomweb, store
from apps.dicom.errors import ConnectionFailed, DicomError, DicomTimeout, DicomWebError
from apps.jobs.errors import ItemFailed
from apps.photos.models import Backend
from apps.servers.models import local_ae


def error_code(exc: DicomError) -> str:
    """PACS_TIMEOUT when the PACS could not be reached or did not answer in time (trying again later
    may pass); PACS_REJECTED when it answered no, or its certificate was not trusted."""
    if isinstance(exc, DicomTimeout):
        return "PACS_TIMEOUT"
    if isinstance(exc, ConnectionFailed) and exc.retriable:  # refused or unreachable, not a bad certificate
        return "PACS_TIMEOUT"
    if isinstance(exc, DicomWebError) and exc.http_status is None and exc.retriable:  # no HTTP answer at all
        return "PACS_TIMEOUT"
    return "PACS_REJECTED"


def _mark(instance: dict, ok: bool, message: str) -> None:
    instance["status"] = "success" if ok else "failed"
    instance["message"] = message


def send_instances(upload, todo: list[dict], ctx, result: dict) -> None:
    """Send `todo` (instance dicts of the upload's item) and set each one's status. An error that ends
    the whole exchange is re-raised after marking what was and was not stored, with result["code"]."""
    server = upload.dicom_server
    seconds = float(upload.timeout_seconds)
    try:
        if upload.backend == Backend.DICOMWEB:
            _stow(server, todo, seconds, upload.verify_tls)
        else:
            peer = replace(server.as_peer(), connect_timeout=seconds, query_timeout=seconds, retrieve_timeout=seconds)
            with ctx.association_slot(server, timeout=seconds):
                _cstore(peer, todo)
    except DicomError as exc:
        result["code"] = error_code(exc)
        for instance in todo:
            if instance["status"] != "success":
                _mark(instance, False, str(exc))
        raise


def _cstore(peer, todo: list[dict]) -> None:
    by_path = {instance["path"]: instance for instance in todo}
    try:
        report = store.store_files(peer, local_ae(), list(by_path), engine=settings.STORE_ENGINE)
    except DicomError as exc:
        _apply(getattr(exc, "report", None), by_path)
        raise
    _apply(report, by_path)


def _apply(report: store.StoreReport | None, by_path: dict[str, dict]) -> None:
    if report is None:
        return
    for outcome in report.stored + report.warnings:
        _mark(by_path[outcome.path], True, outcome.message)
    for path, reason in report.failed:
        _mark(by_path[path], False, reason)


def _stow(server, todo: list[dict], seconds: float, verify_tls: bool) -> None:
    endpoint = server.as_dicomweb()
    if endpoint is None:
        raise ItemFailed(f"Server {server.name} has no DICOMweb URL; set one in the admin or use C-STORE.")
    endpoint = replace(endpoint, timeout=seconds, verify_tls=verify_tls)
    answer = dicomweb.stow(endpoint, [instance["path"] for instance in todo], batch_size=len(todo))
    stored = set(answer.stored) | {uid for uid, _ in answer.warnings}
    reasons = dict(answer.failed)
    for instance in todo:
        uid = instance["sopInstanceUID"]
        if uid in stored:
            _mark(instance, True, "stored")
        else:
            _mark(instance, False, reasons.get(uid) or reasons.get(instance["path"]) or "not acknowledged")
