"""The kinds of retention that remove folders and files: inbox archives, quarantined instances, a retrieval's
downloads once delivered, report files. Only entries named the way the portal names what it writes are
listed (a folder someone else put there is left alone), symlinks are never followed, and nothing a pending,
running or paused job still uses is listed."""
from __future__ import annotations

import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from apps.catalog.filing import forget, forget_under
from apps.core.retention.candidate import Candidate
from apps.jobs.models import ItemStatus, JobStatus
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.sending.models import Inbox, SendJob

ACTIVE = [JobStatus.PENDING, JobStatus.RUNNING]
DAY = 86400.0
ARCHIVE_STAMP = re.compile(r"^(\d{8}_\d{6})(_\d+)?$")  # apps/sending/settle.py: <archive>/<yyyymmdd_hhmmss>[_n]/
QUARANTINE_NAME = re.compile(r"^retrieval-(\d+)-(\d+)-[0-9a-f]+$")  # apps/retrieval/retrieve.py
REPORT_NAME = re.compile(r"^[a-z_]+_\d{8}_\d{6}_job\d+\.(txt|csv)$")  # apps/core/management/commands/dicom.py


def tree_size(path: Path) -> int:
    """Bytes of the regular files under `path` (itself when a file), symlinks not followed."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def busy(model) -> set[int]:
    """Ids of the model's jobs that still run or wait (pending, running, or paused)."""
    return set(model.objects.filter(Q(status__in=ACTIVE) | Q(paused=True)).values_list("pk", flat=True))


def age_of(path: Path) -> float:
    return (time.time() - path.lstat().st_mtime) / DAY


class FolderKind:
    name = ""
    setting = ""

    def days(self) -> int:
        return int(getattr(settings, self.setting))

    def candidates(self) -> list[Candidate]:
        return list(self.find()) if self.days() > 0 else []

    def find(self):
        raise NotImplementedError

    def remove(self, candidate: Candidate) -> None:
        path = Path(candidate.key)
        remove_path(path)
        forget([path])  # the catalog's rows of what went (a delivered retrieval's case folder)
        forget_under(path)


class InboxArchives(FolderKind):
    name, setting = "inbox-archives", "RETENTION_INBOX_ARCHIVE_DAYS"

    def find(self):
        in_use = [Path(p) for job in SendJob.objects.filter(pk__in=busy(SendJob))
                  for p in (job.source_path, job.archive_path) if p]
        seen = set()
        for inbox in Inbox.objects.exclude(archive_path="").order_by("name"):
            root = Path(inbox.archive_path)
            if not root.is_dir() or root.is_symlink():
                continue
            for child in root.iterdir():
                match = ARCHIVE_STAMP.match(child.name)
                if not match or child.is_symlink() or not child.is_dir() or str(child) in seen:
                    continue
                stamp = timezone.make_aware(datetime.strptime(match[1], "%Y%m%d_%H%M%S"))
                age = (timezone.now() - stamp).total_seconds() / DAY
                if age < self.days() or any(p == child or p.is_relative_to(child) for p in in_use):
                    continue
                seen.add(str(child))
                yield Candidate(self.name, str(child), f"inbox {inbox.name}: archive {child.name}", age,
                                tree_size(child))


class Quarantine(FolderKind):
    name, setting = "quarantine", "RETENTION_QUARANTINE_DAYS"

    def find(self):
        root = Path(settings.QUARANTINE_DIR)
        if not root.is_dir():
            return
        running = busy(RetrievalJob)
        for child in root.iterdir():
            match = QUARANTINE_NAME.match(child.name)
            if not match or child.is_symlink() or int(match[1]) in running:
                continue
            age = age_of(child)
            if age >= self.days():
                yield Candidate(self.name, str(child), f"quarantine {child.name}", age, tree_size(child))


class DeliveredDownloads(FolderKind):
    """A retrieval's case folders once every delivery of it succeeded (those that kept their sources), the
    last of them finished RETENTION_DELIVERED_DAYS ago. A folder another retrieval still needs (the same
    study retrieved again, not delivered yet) is kept."""

    name, setting = "delivered-downloads", "RETENTION_DELIVERED_DAYS"

    def eligible_jobs(self):
        cutoff = timezone.now() - timezone.timedelta(days=self.days())
        return (RetrievalJob.objects.exclude(status__in=ACTIVE).filter(paused=False)
                .annotate(deliveries_n=Count("deliveries", distinct=True),
                          delivered_n=Count("deliveries", filter=Q(deliveries__status=JobStatus.SUCCEEDED,
                                                                   deliveries__paused=False), distinct=True),
                          delivered_at=Max("deliveries__completed_at"))
                .filter(deliveries_n__gt=0, delivered_n=F("deliveries_n"), delivered_at__lt=cutoff))

    def find(self):
        jobs = {job.pk: job for job in self.eligible_jobs()}
        items = RetrievalItem.objects.filter(job_id__in=jobs, status=ItemStatus.SUCCEEDED).exclude(path="")
        for item in items.order_by("job_id", "line"):
            job = jobs[item.job_id]
            root = job.downloads_root()
            folder = root / item.path
            if folder.is_symlink() or not folder.is_dir() or not folder.resolve().is_relative_to(root.resolve()):
                continue
            if RetrievalItem.objects.filter(path=item.path).exclude(job_id__in=jobs).exists():
                continue  # another retrieval filed into the same folder and is not delivered yet
            age = (timezone.now() - job.delivered_at).total_seconds() / DAY
            yield Candidate(self.name, str(folder), f"retrieval #{job.pk} line {item.line}", age, tree_size(folder))


class Reports(FolderKind):
    name, setting = "reports", "RETENTION_REPORTS_DAYS"

    def find(self):
        root = Path(settings.DATA_DIR) / "reports"
        if not root.is_dir():
            return
        for child in root.iterdir():
            if not REPORT_NAME.match(child.name) or child.is_symlink() or not child.is_file():
                continue
            age = age_of(child)
            if age >= self.days():
                yield Candidate(self.name, str(child), f"report {child.name}", age, child.lstat().st_size)
