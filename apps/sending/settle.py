"""What happens to an inbox folder once its run is over: archived to `<archive>/<yyyymmdd_hhmmss>/<folder>`
when every instance was confirmed by every destination, moved to the inbox's error folder (when one is
configured) when the run failed, left where it is otherwise. Each move is claimed with a
compare-and-set first, so two processes finishing the last two batches move a folder once; a move a
crash interrupted is finished by the next call (the watcher calls it for every finished run it sees).
Uploaded files (the portal's own copies) are removed once every destination stored them."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.utils import timezone

from apps.audit import record
from apps.jobs.models import JobStatus
from apps.jobs.notices import job_link
from apps.notify.operators import alert_operators
from apps.sending.roots import root_of

log = logging.getLogger("apps.sending")


def settle(job) -> None:
    if job.uploaded and job.status == JobStatus.SUCCEEDED:
        shutil.rmtree(job.source_path, ignore_errors=True)  # our copies of an upload; every one was stored
    inbox = job.inbox
    if inbox is None or not job.is_inbox_run:
        return
    if job.status == JobStatus.SUCCEEDED:
        _archive(job, Path(inbox.archive_path))
    elif job.status in (JobStatus.FAILED, JobStatus.PARTIAL):
        tell_operators(job)
        if inbox.error_path:
            _move_to_errors(job, Path(inbox.error_path))


def tell_operators(job) -> None:
    """An inbox run that did not send everything needs a person: one e-mail per inbox per hour. It names
    the inbox and the run, never the folder (an inbox's folders are often named after the patient)."""
    counts = ", ".join(f"{key} {value}" for key, value in job.progress().items()
                       if key in ("total", "succeeded", "failed", "files", "sent", "skipped", "not_stored"))
    where = "moved to the inbox's error folder" if job.inbox.error_path else "left in the inbox"
    alert_operators(f"inbox-failed:{job.inbox.name}", f"Inbox {job.inbox.name}: a run {job.status}",
                    f"Run #{job.pk} of the inbox {job.inbox.name} ended {job.status} ({counts}); its folder is "
                    f"{where}, and retrying the run sends it again.\n\nDetails: {job_link(job)}")


def _archive(job, archive_root: Path) -> None:
    model = type(job)
    if not job.archive_path:
        stamp = f"{timezone.localtime():%Y%m%d_%H%M%S}"
        target, n = archive_root / stamp / job.folder, 1
        while target.exists():  # the same name archived within the same second
            n += 1
            target = archive_root / f"{stamp}_{n}" / job.folder
        if not model.objects.filter(pk=job.pk, archive_path="").update(archive_path=str(target)):
            job.refresh_from_db(fields=["archive_path"])  # another process claimed it
        else:
            job.archive_path = str(target)
    source, target = Path(job.source_path), Path(job.archive_path)
    if not source.exists() or target.exists():
        return  # moved already
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    except OSError as exc:
        problem = f"Sent, but archiving failed ({exc.strerror or exc}); the folder is still in the inbox."
        model.objects.filter(pk=job.pk).update(note=problem)
        job.add_log(f"PHASE 3 archive failed: {exc.strerror or exc}")
        log.warning("run=%s archive failed: %s", job.pk, type(exc).__name__)
        return
    model.objects.filter(pk=job.pk).update(note="")
    job.add_log(f"PHASE 3 archived to {job.shown_archive_path}")
    log.info("run=%s inbox=%s folder archived", job.pk, job.inbox.name)
    # The folder's name is the patient's ID and name: the audit trail names the run (whose row holds the
    # path for those allowed to see it) and, for a project, the pseudonym, never the folder itself.
    details = {"inbox": job.inbox.name, "run": job.pk, "archive": str(target.parent)}
    if job.project_id:
        details["pseudonym"] = job.shown_folder
    record("inbox-watcher", "folder.archived", job, **details)


def _move_to_errors(job, error_root: Path) -> None:
    source = Path(job.source_path)
    if source.is_relative_to(error_root) or not source.exists():
        return
    target = error_root / job.folder
    if target.exists():
        target = error_root / f"{job.folder}_{timezone.localtime():%Y%m%d_%H%M%S}"
    model = type(job)
    if not model.objects.filter(pk=job.pk, source_path=str(source)).update(source_path=str(target)):
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    except OSError as exc:
        model.objects.filter(pk=job.pk).update(source_path=str(source), note=f"Moving to the error folder failed "
                                                                            f"({exc.strerror or exc}).")
        return
    job.source_path, job.root = str(target), str(root_of(target.resolve()) or target)
    model.objects.filter(pk=job.pk).update(root=job.root)
    job.add_log(f"moved to the error folder {error_root if job.project_id else target}; retry sends it from there")
