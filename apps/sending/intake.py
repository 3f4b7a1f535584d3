"""Starting send jobs: from a path on the server (inside IMPORT_ROOTS), from uploaded files (kept
in DATA_DIR until every destination stored them), or from a ready inbox folder (the watcher)."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.dicom import paths
from apps.dicom.rewrite import Patient
from apps.sending.models import Inbox, SendJob
from apps.sending.roots import confined, root_of

UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def relative_files(source: Path, root: Path) -> tuple[list[str], list[list[str]]]:
    """Every regular file to send, relative to `source` ("" when the source is one file), hidden ones
    left out; and [name, reason] of every entry that is not sent (a FIFO, a device, a link out of
    `root`, a loop of links…), as the job's report lists it."""
    found, skipped = paths.list_files(source, [root], roots_name="the allowed folder", skip_hidden=True)
    return ([os.path.relpath(p, source) if p != source else "" for p in found],
            [[os.path.relpath(s.path, source) if s.path != source else source.name, s.reason] for s in skipped])


def start_send(*, servers, source: Path, root: Path, user=None, method: str = SendJob.Method.C_STORE,
               uploaded: bool = False, description: str = "", start: bool = True, **run) -> SendJob:
    """Create the job and its batches and queue them, in one transaction: a crash leaves either no job
    or a queued one (which the runner re-queues if its messages were lost). `start=False` leaves it for
    runner.run_inline (the command line)."""
    names, skipped = relative_files(source, root)
    with transaction.atomic():
        job = SendJob.objects.create(created_by=user, source_path=str(source), root=str(root), method=method,
                                     uploaded=uploaded, description=description[:200], **run)
        job.servers.set(servers)
        job.add_items(names, skipped)
        job.add_log(f"{len(names)} files to {', '.join(s.name for s in servers)} by {method}")
        if start:
            job.start(user)
    return job


def send_path(path: str, servers, *, user=None, method: str = SendJob.Method.C_STORE, project=None) -> SendJob:
    """Raises OutsideRoots when the path is not inside IMPORT_ROOTS, FileNotFoundError when it is absent."""
    source = confined(path)
    if not source.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    return start_send(servers=servers, source=source, root=root_of(source), user=user, method=method,
                      description=f"{source.name or source}" if project is None else f"files for project {project}",
                      project=project)


def send_uploads(uploads, servers, *, user=None, method: str = SendJob.Method.C_STORE, project=None) -> SendJob:
    folder = Path(settings.DATA_DIR) / "sending" / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    for number, upload in enumerate(uploads):
        name = UNSAFE_NAME.sub("_", Path(upload.name or "file").name).strip(".") or "file"
        with open(folder / f"{number:05d}_{name}", "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    return start_send(servers=servers, source=folder, root=folder, user=user, method=method, uploaded=True,
                      description=f"{len(uploads)} uploaded files", project=project)


def start_inbox_run(inbox: Inbox, folder: Path, patient: Patient, fingerprint: str) -> SendJob:
    # with a project, the run is known by the pseudonym of the patient the folder's name gives
    pseudonym = inbox.project.patient(patient.patient_id).pseudonym if inbox.project else ""
    return start_send(pseudonym=pseudonym, servers=list(inbox.destinations.all()), source=folder, root=root_of(folder) or folder,
                      description=f"inbox {inbox.name}", inbox=inbox, folder=folder.name, project=inbox.project,
                      patient_id=patient.patient_id, patient_name=patient.patient_name, fingerprint=fingerprint)
