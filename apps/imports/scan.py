"""The source folder: where an import may read (IMPORT_ROOTS), and the scan that lists a tree and
cuts it into file batches, one import item each."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.dicom import paths
from apps.dicom.paths import PathRefused
from apps.imports import pool
from apps.imports.batch import Ledger, skip_known_files, sweep_incoming
from apps.imports.models import ImportItem
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.jobs.queue import enqueue

ROOTS_NAME = "IMPORT_ROOTS"


class SourceRefused(PathRefused):
    pass


def import_roots() -> list[Path]:
    return paths.resolved_roots(settings.IMPORT_ROOTS)


def inside_roots(path: Path) -> bool:
    return paths.within(path, import_roots())


def resolve_source(text: str) -> Path:
    """The folder a user named, with symlinks and `..` resolved, if it lies inside IMPORT_ROOTS."""
    if not settings.IMPORT_ROOTS:
        raise SourceRefused("No folder may be imported: the IMPORT_ROOTS setting is empty.")
    try:
        resolved = paths.confine(text or "", import_roots(), what="source_path", roots_name=ROOTS_NAME,
                                 must_exist=True)
    except paths.PathMissing:
        raise SourceRefused(f"{text}: no such folder.") from None
    except PathRefused as exc:
        raise SourceRefused(str(exc)) from None
    if not resolved.is_dir():
        raise SourceRefused(f"{text}: not a folder.")
    return resolved


def walk(source: Path, should_stop):
    """(files, problems): every regular file under source in tree order (a folder's files, then its
    subfolders), and what was not used with the reason (apps/dicom/paths.walk: FIFOs, devices, loops
    of links, links out of IMPORT_ROOTS or to folders, unreadable folders)."""

    def stop_if_asked():
        if should_stop():
            raise ItemCanceled()

    found, skipped = paths.list_files(source, import_roots(), roots_name=ROOTS_NAME, should_stop=stop_if_asked)
    return ([str(p) for p in found],
            [{"file": os.path.relpath(s.path, source), "reason": s.reason} for s in skipped])


KNOWN_CHECK_CHUNK = 1000  # paths per known-file query


def scan_tree(item, ctx) -> None:
    """List the tree, decide every file that is unchanged since it was last looked at (a re-import's
    whole work, done here without a queue hop per batch), and cut the rest into batch items."""
    job = item.job
    if job.items.filter(kind=ImportItem.Kind.FILES).exists():
        return queue_batches(job)  # a re-run after this scan had committed its batches: nothing to redo
    source = Path(job.source_path)
    if not inside_roots(source.resolve()):
        raise ItemFailed(f"{source} is no longer inside IMPORT_ROOTS; nothing was read.")
    if job.run_inline:
        pool.warm()  # this process will decode the batches next
    sweep_incoming()
    files, problems = walk(source, ctx.should_stop)
    type(job).objects.filter(pk=job.pk).update(files_found=len(files), scan_errors=problems)
    ledger = Ledger(item)
    to_read = []
    for start in range(0, len(files), KNOWN_CHECK_CHUNK):
        if ctx.should_stop():
            raise ItemCanceled()
        to_read += [str(path) for path, _ in skip_known_files(files[start:start + KNOWN_CHECK_CHUNK], item, ledger)]
        ledger.write()
    size = max(1, settings.IMPORT_BATCH_SIZE)
    batches = [ImportItem(job=job, kind=ImportItem.Kind.FILES, number=n + 1, files=to_read[i:i + size])
               for n, i in enumerate(range(0, len(to_read), size))]
    with transaction.atomic():
        ImportItem.objects.bulk_create(batches)
        queue_batches(job)
    item.result = {"files": len(files), "unchanged": len(files) - len(to_read), "batches": len(batches),
                   "not_used": len(problems)}
    ctx.log.info("scanned %d files: %d unchanged, %d to read in %d batches; %d paths not used", len(files),
                 len(files) - len(to_read), len(to_read), len(batches), len(problems))


def queue_batches(job) -> None:
    if not job.run_inline:
        enqueue(job, job.items.filter(kind="files", status="pending"))
