"""One delivery batch, end to end: gather the files of its retrieved cases, send them to the target,
and delete the sources only after the target confirmed every byte (portal: the full length, every
byte checked by the receiving end against our chunk sha1s, the zip unpacked and each entry's CRC
checked; folder: the copy re-read and hashed; PACS: every instance acknowledged). Until then nothing
is deleted, and a re-run resumes: to a portal the batch's zip is produced again byte for byte (it is
never stored here unless `keep_zip`) and the upload continues from the receiving end's offset; to a
folder in direct mode, after the files already copied."""
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
from typing import Callable

from django.conf import settings

from apps.audit import record
from apps.catalog.filing import forget
from apps.delivery import alerts
from apps.delivery.bundle import file_sha1
from apps.delivery.deidentified import DeidentifiedSource, deidentify_entries, entry_size, plan_entries
from apps.delivery.models import DeliveryTarget
from apps.delivery.models.target import confined_folder
from apps.delivery.tus_client import SendCanceled, TusError, TusSender
from apps.delivery.zipstream import ZipStream
from apps.dicom.errors import DicomError
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.jobs.models import ItemStatus
from apps.servers import storing
from apps.servers.outbound import outbound_problem

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
    job = batch.job
    if job.project_id is None or (job.retrieval is not None and job.retrieval.project_id == job.project_id):
        return _deliver(batch, ctx)  # nothing to do, or filed de-identified for this project already
    if job.target.kind not in (DeliveryTarget.Kind.DICOM, DeliveryTarget.Kind.DICOMWEB):
        return _deliver(batch, ctx, deidentify=True)  # de-identified in memory as it is sent: no copy here
    # a project's batch to a PACS: de-identified copies in a work folder of its own, stored, then removed
    work = Path(settings.DATA_DIR) / "delivery" / "work" / f"batch{batch.pk}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        return _deliver(batch, ctx, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _deliver(batch, ctx, work: Path | None = None, deidentify: bool = False) -> None:
    job, target = batch.job, batch.job.target
    if job.retrieval is None:
        raise ItemFailed("The retrieval this delivery came from was deleted.")
    found, originals = gather(batch), {}
    if work is not None or deidentify:  # what is zipped, copied, stored or uploaded: de-identified only
        deidentified = deidentify_entries(job.project, found.entries, work) if work is not None else (
            plan_entries(job.project, found.entries))
        found.entries, originals = deidentified.entries, deidentified.originals
        batch.result["not_delivered"] = [list(entry) for entry in deidentified.not_sent]
    batch.files = len(found.entries)
    batch.bytes = sum(entry_size(path) for _, path in found.entries)
    batch.result.update(lines=found.lines, skipped_lines=found.skipped)
    batch.save(update_fields=["files", "bytes", "result"])
    if not found.entries:
        batch.result["note"] = "No retrieved case in this batch; nothing to deliver."
        return
    progress = Progress(batch, ctx)
    zipped = job.mode == job.Mode.ZIP and target.zippable
    stream = ZipStream(found.entries) if zipped or target.kind == DeliveryTarget.Kind.PORTAL else None
    try:
        if target.kind == DeliveryTarget.Kind.PORTAL:
            confirmed = _deliver_to_portal(batch, target, stream, found, ctx, progress)
        elif target.kind in (DeliveryTarget.Kind.DICOM, DeliveryTarget.Kind.DICOMWEB):
            confirmed = _deliver_to_pacs(batch, target, found, ctx)
        elif zipped:
            confirmed = _zip_to_folder(batch, target, stream, found)
        else:
            confirmed = _copy_to_folder(batch, target, found, ctx, progress)
        if zipped and job.keep_zip:
            _keep_zip(batch, stream)
    except (TusError, OSError) as exc:
        if getattr(exc, "restart", False):
            batch.upload_url = ""
            batch.save(update_fields=["upload_url"])
        _audit(batch, target, found, ok=False, error=str(exc))
        alerts.target_refused(batch)
        raise ItemFailed(f"Batch {batch.number} to {target.describe()} failed: {exc}. Nothing was deleted.") from exc
    except ItemFailed:
        alerts.target_refused(batch)
        raise
    except SendCanceled:
        raise ItemCanceled() from None
    progress(batch.sent_bytes, batch.bytes, force=True)
    if job.clear:
        clear_files([originals.get(name, path) for name, path in found.entries if name in confirmed],
                    job.retrieval.downloads_root())
    batch.result["cleared"] = job.clear
    batch.save(update_fields=["sent_bytes", "result"])
    _audit(batch, target, found, ok=True)


def _audit(batch, target, found: BatchFiles, *, ok: bool, error: str = "") -> None:
    record(batch.job.created_by, "delivery.batch", batch.job, batch=batch.number, to=target.describe(),
           lines=found.lines, files=len(found.entries), bytes=batch.bytes, mode=batch.job.mode,
           result="delivered" if ok else "failed", error=error)


def zip_name(batch) -> str:
    return f"delivery-{batch.job_id}-batch-{batch.number}.zip"


# --- to another portal ---------------------------------------------------------------------------
def _deliver_to_portal(batch, target, stream: ZipStream, found: BatchFiles, ctx, progress) -> set[str]:
    """One upload per batch, in either mode: the batch's zip, produced while it is sent (never written
    here), unpacked by the receiving portal. A re-run produces the same bytes and continues the upload
    from the receiving end's offset."""
    batch.bytes = stream.length
    batch.save(update_fields=["bytes"])
    _check_outbound(batch, target, target.url)

    def remember(url):
        batch.upload_url = url
        type(batch).objects.filter(pk=batch.pk).update(upload_url=url)

    with TusSender(target.uploads_url(), target.token, chunk_size=settings.DELIVERY_CHUNK_BYTES,
                   retries=settings.DELIVERY_RETRIES, backoff=settings.DELIVERY_BACKOFF_SECONDS,
                   should_stop=ctx.should_stop,
                   on_progress=lambda sent, total: progress(sent, total, stream.entry_at(sent))) as sender:
        receipt = sender.send(stream, zip_name(batch), url=batch.upload_url or None, on_created=remember)
    if receipt.files != len(found.entries):
        raise TusError(f"the receiving portal unpacked {receipt.files} of {len(found.entries)} files", restart=True)
    batch.result.update(verified_bytes=receipt.verified, upload=receipt.url, resumed_at=receipt.resumed_at,
                        started_at_offset=receipt.started_at, sent_this_run=receipt.sent_bytes)
    batch.sent_bytes = batch.bytes
    return {name for name, _ in found.entries}


# --- zips on this side ---------------------------------------------------------------------------
def _zip_to_folder(batch, target, stream: ZipStream, found: BatchFiles) -> set[str]:
    batch.bytes = stream.length
    batch.save(update_fields=["bytes"])
    batch.result["sha1"] = write_verified(_folder(target) / zip_name(batch), stream.write_to)
    batch.sent_bytes = batch.bytes
    return {name for name, _ in found.entries}


def _keep_zip(batch, stream: ZipStream) -> None:
    """keep_zip: the batch's zip in DELIVERY_ZIP_DIR (written only when asked for: delivering needs none)."""
    path = Path(settings.DELIVERY_ZIP_DIR) / zip_name(batch)
    write_verified(path, stream.write_to)
    batch.zip_path = str(path)
    batch.save(update_fields=["zip_path"])


# --- files to a folder ---------------------------------------------------------------------------
def _copy_to_folder(batch, target, found: BatchFiles, ctx, progress) -> set[str]:
    # Files a failed earlier run already delivered are not copied again (same files, same order).
    names = [name for name, _ in found.entries]
    fingerprint = hashlib.sha1("\n".join(names).encode()).hexdigest()
    done = batch.result.get("confirmed_files", 0) if batch.result.get("files_fingerprint") == fingerprint else 0
    confirmed = set(names[:done])
    sent = sum(entry_size(path) for _, path in found.entries[:done])
    folder = _folder(target)
    stop = threading.Event()

    def copy(path, name):
        if not stop.is_set():
            if isinstance(path, DeidentifiedSource):
                write_verified(folder / name, path.write_to)
            else:
                copy_verified(path, folder / name)

    # Several files at once (a folder may be a network share, where a file's cost is its round trips).
    # Results are taken in order, so the confirmed files stay a prefix a re-run can skip.
    with ThreadPoolExecutor(max_workers=settings.DELIVERY_PARALLEL_COPIES, thread_name_prefix="deliver") as pool:
        pending = [(name, path, pool.submit(copy, path, name)) for name, path in found.entries[done:]]
        try:
            for name, path, future in pending:
                while not future.done():
                    if ctx.should_stop():
                        raise ItemCanceled()
                    wait([future], timeout=0.5)
                future.result()
                confirmed.add(name)
                sent += entry_size(path)
                batch.result.update(confirmed_files=len(confirmed), files_fingerprint=fingerprint)
                progress(sent, batch.bytes, name)
        finally:
            stop.set()
            for _, _, future in pending:
                future.cancel()
    batch.sent_bytes = sent
    return confirmed


def _deliver_to_pacs(batch, target, found: BatchFiles, ctx) -> set[str]:
    server = target.server
    if not server.may(batch.job.created_by, "send"):  # access may have changed since the job started
        raise ItemFailed(f"Batch {batch.number}: {server.refusal('send')} Nothing was deleted.")
    by_sop = {Path(name).stem: name for name, _ in found.entries}
    stow = target.kind == DeliveryTarget.Kind.DICOMWEB
    if stow:
        _check_outbound(batch, target, server.dicomweb_url)
    try:
        report = storing.store(server, [path for _, path in found.entries],
                               method=storing.STOW_RS if stow else storing.C_STORE,
                               slot=ctx.association_slot(server), stow_batch=settings.DELIVERY_STOW_BATCH)
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


def _check_outbound(batch, target, url: str) -> None:
    """The URL is checked again now: a name may resolve elsewhere than when it was saved, and targets
    saved before the rule existed were never checked."""
    problem = outbound_problem(url)
    if problem:
        raise ItemFailed(f"Batch {batch.number} to {target.name}: {problem}. Nothing was sent or deleted.")


def _folder(target) -> Path:
    """The folder target, checked again now: the roots or a symlink may have changed since it was saved."""
    from django.core.exceptions import ValidationError

    try:
        return confined_folder(target.path)
    except ValidationError as exc:
        raise ItemFailed("; ".join(exc.messages)) from None


# --- files ---------------------------------------------------------------------------------------
def write_verified(destination: Path, write: Callable[[Path], str]) -> str:
    """`write(path)` writes a file and returns the sha1 (hex) of what it meant to write. It writes under
    a temporary name; the file is re-read and renamed to `destination` only if it reads back the same."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        want = write(partial)
        if file_sha1(partial) != want:
            raise OSError(f"the copy of {destination.name} in {destination.parent} reads back differently")
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return want


def copy_verified(source: Path, destination: Path) -> str:
    def copy(partial: Path) -> str:
        shutil.copyfile(source, partial)
        return file_sha1(source)

    return write_verified(destination, copy)


def clear_files(paths: list[Path], root: Path) -> None:
    """Delete delivered files, then their folders that became empty (never the root itself)."""
    folders = set()
    for path in paths:
        path.unlink(missing_ok=True)
        folders.add(path.parent)
    forget(paths)
    root = Path(root).resolve()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        folder = folder.resolve()
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
