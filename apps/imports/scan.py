"""The source folder: where an import may read (IMPORT_ROOTS), and the scan that lists a tree and
cuts it into file batches, one import item each."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.imports import pool
from apps.imports.batch import Ledger, skip_known_files, sweep_incoming
from apps.imports.models import ImportItem
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.jobs.queue import enqueue


class SourceRefused(ValueError):
    pass


def inside_roots(path: Path) -> bool:
    return any(path == root or path.is_relative_to(root) for root in settings.IMPORT_ROOTS)


def resolve_source(text: str) -> Path:
    """The folder a user named, with symlinks and `..` resolved, if it lies inside IMPORT_ROOTS."""
    roots = settings.IMPORT_ROOTS
    if not roots:
        raise SourceRefused("No folder may be imported: the IMPORT_ROOTS setting is empty.")
    named = ", ".join(str(r) for r in roots)
    if not text or "\x00" in text:
        raise SourceRefused(f"source_path must name a folder inside IMPORT_ROOTS ({named}).")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise SourceRefused(f"source_path must be an absolute path inside IMPORT_ROOTS ({named}).")
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise SourceRefused(f"{text}: no such folder.") from None
    if not inside_roots(resolved):
        raise SourceRefused(f"{text} resolves to {resolved}, which is outside IMPORT_ROOTS ({named}).")
    if not resolved.is_dir():
        raise SourceRefused(f"{text}: not a folder.")
    return resolved


def walk(source: Path, should_stop):
    """(files, problems): every regular file under source in tree order (a folder's files, then its
    subfolders), and what was not used. Symbolic links are used only when they resolve inside
    IMPORT_ROOTS; links to folders are not followed (a loop or a second path to the same images).
    The folder entries say what each name is, so a plain file costs no system call here."""
    files, problems = [], []

    def refuse(path: str, reason: str):
        problems.append({"file": os.path.relpath(path, source), "reason": reason})

    folders = [str(source)]
    while folders:
        if should_stop():
            raise ItemCanceled()
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            refuse(exc.filename or folder, f"cannot read the folder: {exc.strerror or exc}")
            continue
        subfolders = []
        for entry in entries:
            if entry.is_symlink():
                target = Path(entry.path).resolve()
                if target.is_dir():
                    refuse(entry.path, "a symbolic link to a folder: not followed")
                elif not inside_roots(target):
                    refuse(entry.path, "a symbolic link that leads outside IMPORT_ROOTS: not read")
                elif not target.is_file():
                    refuse(entry.path, "a symbolic link to something that is not a regular file")
                else:
                    files.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                files.append(entry.path)
            # sockets, fifos, devices: not files anyone imports
        folders += reversed(subfolders)  # popped in name order
    return files, problems


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
