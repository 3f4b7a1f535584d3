"""Sending an upload's DICOM files (apps/servers/storing.py): C-STORE in one association (TLS when the
server has it) or STOW-RS in one request, and what each outcome means for the sender."""
from __future__ import annotations

from apps.dicom.errors import ConnectionFailed, DicomError, DicomTimeout, DicomWebError
from apps.dicom.store import StoreReport
from apps.photos.models import Backend
from apps.servers import storing


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
    by_path = {instance["path"]: instance for instance in todo}
    stow = upload.backend == Backend.DICOMWEB
    try:
        report = storing.store(server, list(by_path), method=storing.STOW_RS if stow else storing.C_STORE,
                               slot=ctx.association_slot(server, timeout=seconds), timeout=seconds,
                               verify_tls=upload.verify_tls if stow else None, stow_batch=max(1, len(todo)))
    except DicomError as exc:
        _apply(getattr(exc, "report", None), by_path)
        result["code"] = error_code(exc)
        for instance in todo:
            if instance["status"] != "success":
                _mark(instance, False, str(exc))
        raise
    answered = _apply(report, by_path)
    for path, instance in by_path.items():
        if path not in answered:
            _mark(instance, False, "not acknowledged")


def _apply(report: StoreReport | None, by_path: dict[str, dict]) -> set[str]:
    """Mark each instance the report names; the paths it named."""
    if report is None:
        return set()
    answered = set()
    for outcome in report.stored + report.warnings:
        if outcome.path in by_path:
            _mark(by_path[outcome.path], True, outcome.message)
            answered.add(outcome.path)
    for path, reason in report.failed:
        if path in by_path:
            _mark(by_path[path], False, reason)
            answered.add(path)
    return answered
