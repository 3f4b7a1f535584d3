"""One delivery batch, end to end: gather the files of its retrieved cases, zip them or not, send them
to the target, and delete the sources only after the target confirmed every byte (portal: the full
length, every byte checked by the receiving end against our chunk sha1s, the zip unpacked; folder: the
copy re-read and hashed; PACS: every instance acknowledged). Until then nothing is deleted, and a
re-run resumes: the zip is rebuilt byte for byte and the upload continues from the receiving end's
offset."""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from apps.audit import record
from apps.delivery.bundle import file_sha1, make_zip
from apps.delivery.models import DeliveryTarget
from apps.delivery.tus_client import SendCanceled, TusError, TusSender
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.jobs.models import ItemStatus

PROGRESS_EVERY = 1.0  # seconds between progress writes


@dataclass
class BatchFiles:
    entries: list[tuple[str, Path]]  # (path relative to the downloads root, file)
    lines: list[int]  # case-list lines delivered
    skipped: list[int]  # case-list lines not delivered (their retrieval failed)


def gather(batch) -> BatchFiles:
    """The files of the batch's succeeded cases, named as in the download layout."""
    job = batch.job
    root = job.retrieval.downloads_root()
    cases = job.retrieval.items.filter(line__in=batch.lines).order_by("line")
    entries, lines, skipped = {}, [], []
    for case in cases:
        if case.status != ItemStatus.SUCCEEDED:
            skipped.append(case.line)
            continue
        lines.append(case.line)
        for study in case.result.get("studies", []):
            folder = Path(study["folder"])
            for path in sorted(folder.glob("*.dcm")):
                entries[path.relative_to(root).as_posix()] = path
    return BatchFiles(sorted(entries.items()), lines, skipped)


class Progress:
    """Heartbeats with byte counters, at most once a second."""

    def __init__(self, batch, ctx):
        self.batch, self.ctx, self.last = batch, ctx, 0.0

    def __call__(self, sent: int, total: int, current: str = "", force: bool = False) -> None:
        if force or time.monotonic() - self.last > PROGRESS_EVERY:
            self.last = time.monotonic()
            self.batch.sent_bytes = sent
            type(self.batch).objects.filter(pk=self.batch.pk).update(sent_bytes=sent)
            self.ctx.heartbeat(sent_bytes=sent, total_bytes=total, current_file=current)


def deliver_batch(batch, ctx) -> None:
    job, target = batch.job, batch.job.target
    if job.retrieval is None:
        raise ItemFailed("The retrieval this delivery came from was deleted.")
    found = gather(batch)
    batch.files = len(found.entries)
    batch.bytes = sum(path.stat().st_size for _, path in found.entries)
    batch.result.update(lines=found.lines, skipped_lines=found.skipped)
    batch.save(update_fields=["files", "bytes", "result"])
    if not found.entries:
        batch.result["note"] = "No retrieved case in this batch; nothing to deliver."
        return
    progress = Progress(batch, ctx)
    try:
        if job.mode == job.Mode.ZIP and target.zippable:
            confirmed = _deliver_zip(batch, target, found, ctx, progress)
        else:
            confirmed = _deliver_direct(batch, target, found, ctx, progress)
    except (TusError, OSError) as exc:
        if getattr(exc, "restart", False):
            batch.upload_url = ""
            batch.save(update_fields=["upload_url"])
        _audit(batch, target, found, ok=False, error=str(exc))
        raise ItemFailed(f"Batch {batch.number} to {target.describe()} failed: {exc}. Nothing was deleted.") from exc
    except SendCanceled:
        raise ItemCanceled() from None
    progress(batch.bytes if job.mode == job.Mode.DIRECT else batch.sent_bytes, batch.bytes, force=True)
    if job.clear:
        clear_files([path for name, path in found.entries if name in confirmed], job.retrieval.downloads_root())
    if batch.zip_path and not job.keep_zip:
        Path(batch.zip_path).unlink(missing_ok=True)
    batch.result["cleared"] = job.clear
    batch.save(update_fields=["sent_bytes", "result"])
    _audit(batch, target, found, ok=True)


def _audit(batch, target, found: BatchFiles, *, ok: bool, error: str = "") -> None:
    record(batch.job.created_by, "delivery.batch", batch.job, batch=batch.number, to=target.describe(),
           lines=found.lines, files=len(found.entries), bytes=batch.bytes, mode=batch.job.mode,
           result="delivered" if ok else "failed", error=error)


# --- zip mode ------------------------------------------------------------------------------------
def _zip_for(batch, found: BatchFiles) -> Path:
    """The batch's zip; rebuilt only when missing (the same cases give the same bytes)."""
    path = Path(settings.DELIVERY_ZIP_DIR) / f"delivery-{batch.job_id}-batch-{batch.number}.zip"
    if not path.exists():
        make_zip(found.entries, path)
    if batch.zip_path != str(path):
        batch.zip_path = str(path)
        batch.save(update_fields=["zip_path"])
    return path


def _deliver_zip(batch, target, found: BatchFiles, ctx, progress) -> set[str]:
    started = time.monotonic()
    zip_path = _zip_for(batch, found)
    batch.result["zip_seconds"] = round(time.monotonic() - started, 3)
    batch.bytes = zip_path.stat().st_size
    batch.save(update_fields=["bytes"])
    if target.kind == DeliveryTarget.Kind.PORTAL:
        def remember(url):
            batch.upload_url = url
            type(batch).objects.filter(pk=batch.pk).update(upload_url=url)

        with _sender(target, ctx, lambda sent, total: progress(sent, total, zip_path.name)) as sender:
            receipt = sender.send(zip_path, zip_path.name, url=batch.upload_url or None, on_created=remember)
        if receipt.files != len(found.entries):
            raise TusError(f"the receiving portal unpacked {receipt.files} of {len(found.entries)} files")
        batch.result.update(verified_bytes=receipt.verified, upload=receipt.url, resumed_at=receipt.resumed_at,
                            started_at_offset=receipt.started_at, sent_this_run=receipt.sent_bytes)
    else:
        batch.result["sha1"] = copy_verified(zip_path, _folder(target) / zip_path.name)
    batch.sent_bytes = batch.bytes
    return {name for name, _ in found.entries}


def _sender(target, ctx, on_progress) -> TusSender:
    return TusSender(target.uploads_url(), target.token, chunk_size=settings.DELIVERY_CHUNK_BYTES,
                     retries=settings.DELIVERY_RETRIES, backoff=settings.DELIVERY_BACKOFF_SECONDS,
                     should_stop=ctx.should_stop, on_progress=on_progress)


# --- direct mode ---------------------------------------------------------------------------------
def _deliver_direct(batch, target, found: BatchFiles, ctx, progress) -> set[str]:
    kind = target.kind
    if kind in (DeliveryTarget.Kind.DICOM, DeliveryTarget.Kind.DICOMWEB):
        return _deliver_to_pacs(batch, target, found, ctx)
    # Files a failed earlier run already delivered are not sent again (same files, same order).
    names = [name for name, _ in found.entries]
    fingerprint = hashlib.sha1("\n".join(names).encode()).hexdigest()
    done = batch.result.get("confirmed_files", 0) if batch.result.get("files_fingerprint") == fingerprint else 0
    confirmed = set(names[:done])
    sent = sum(path.stat().st_size for _, path in found.entries[:done])
    send_one = _portal_sender(target) if kind == DeliveryTarget.Kind.PORTAL else _folder_copier(target)
    stop = threading.Event()
    # Several files travel at once: a small file's cost is the request's round trip, not its bytes.
    # Results are taken in order, so the confirmed files stay a prefix a re-run can skip.
    try:
        with ThreadPoolExecutor(max_workers=settings.DELIVERY_PARALLEL_UPLOADS, thread_name_prefix="deliver") as pool:
            pending = [(name, path, pool.submit(send_one, path, name, stop)) for name, path in found.entries[done:]]
            try:
                for name, path, future in pending:
                    while not future.done():
                        if ctx.should_stop():
                            raise ItemCanceled()
                        wait([future], timeout=0.5)
                    future.result()
                    confirmed.add(name)
                    sent += path.stat().st_size
                    batch.result.update(confirmed_files=len(confirmed), files_fingerprint=fingerprint)
                    progress(sent, batch.bytes, name)
            finally:
                stop.set()
                for _, _, future in pending:
                    future.cancel()
    finally:
        for sender in getattr(send_one, "senders", []):
            sender.close()
    batch.sent_bytes = sent
    return confirmed


def _portal_sender(target):
    """send(path, name, stop) for pool threads: one TusSender (one connection) per thread."""
    local, senders = threading.local(), []

    def send(path, name, stop):
        if not hasattr(local, "sender"):
            local.sender = TusSender(target.uploads_url(), target.token, chunk_size=settings.DELIVERY_CHUNK_BYTES,
                                     retries=settings.DELIVERY_RETRIES, backoff=settings.DELIVERY_BACKOFF_SECONDS,
                                     should_stop=stop.is_set)
            senders.append(local.sender)
        local.sender.send(path, name)

    send.senders = senders
    return send


def _folder_copier(target):
    folder = _folder(target)

    def copy(path, name, stop):
        if not stop.is_set():
            copy_verified(path, folder / name)

    return copy


def _deliver_to_pacs(batch, target, found: BatchFiles, ctx) -> set[str]:
    from apps.dicom.dicomweb import stow
    from apps.dicom.errors import DicomError
    from apps.dicom.store import store_files
    from apps.servers.models import local_ae

    server = target.server
    if not server.may(batch.job.created_by, "send"):  # access may have changed since the job started
        raise ItemFailed(f"Batch {batch.number}: {server.refusal('send')} Nothing was deleted.")
    by_sop = {Path(name).stem: name for name, _ in found.entries}
    paths = [path for _, path in found.entries]
    try:
        if target.kind == DeliveryTarget.Kind.DICOMWEB:
            result = stow(server.as_dicomweb(), paths, batch_size=settings.DELIVERY_STOW_BATCH)
            stored = set(result.stored) | {uid for uid, _ in result.warnings}
            failed = result.failed
        else:
            with ctx.association_slot(server):
                report = store_files(server.as_peer(), local_ae(), paths)
            stored = {o.sop_instance_uid for o in report.stored + report.warnings}
            failed = report.failed
    except DicomError as exc:
        raise ItemFailed(f"Batch {batch.number} to {target.describe()} failed: {exc}. Nothing was deleted.") from exc
    confirmed = {by_sop[uid] for uid in stored if uid in by_sop}
    if failed or len(confirmed) != len(found.entries):
        reasons = "; ".join(f"{what}: {why}" for what, why in failed[:5])
        raise ItemFailed(f"Batch {batch.number}: {target.server.name} stored {len(confirmed)} of "
                         f"{len(found.entries)} instances ({reasons}). Nothing was deleted.")
    batch.sent_bytes = batch.bytes
    return confirmed


def _folder(target) -> Path:
    """The folder target, checked again now: the roots or a symlink may have changed since it was saved."""
    from django.core.exceptions import ValidationError

    from apps.delivery.models.target import confined_folder

    try:
        return confined_folder(target.path)
    except ValidationError as exc:
        raise ItemFailed("; ".join(exc.messages)) from None


# --- files ---------------------------------------------------------------------------------------
def copy_verified(source: Path, destination: Path) -> str:
    """Copy via a temporary name, re-read the copy, and rename it into place only if its sha1 matches."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        shutil.copyfile(source, partial)
        want, got = file_sha1(source), file_sha1(partial)
        if want != got:
            raise OSError(f"the copy of {source.name} in {destination.parent} reads back differently")
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return want


def clear_files(paths: list[Path], root: Path) -> None:
    """Delete delivered files, then their folders that became empty (never the root itself)."""
    folders = set()
    for path in paths:
        path.unlink(missing_ok=True)
        folders.add(path.parent)
    root = Path(root).resolve()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        folder = folder.resolve()
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
