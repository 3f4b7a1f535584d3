"""Retention: what the portal removes once it is no longer needed, each kind after its own setting's days
(0 keeps it for ever):
  inbox-archives       sent inbox folders under each inbox's archive       RETENTION_INBOX_ARCHIVE_DAYS (90)
  quarantine           quarantined instances (QUARANTINE_DIR)              RETENTION_QUARANTINE_DAYS (30)
  delivered-downloads  a retrieval's downloads once every delivery of it   RETENTION_DELIVERED_DAYS (30)
                       succeeded
  reports              report files under DATA_DIR/reports                 RETENTION_REPORTS_DAYS (90)
  incomplete-uploads   tus uploads never completed, past their expiry      UPLOAD_EXPIRE_HOURS (24)
  job-records          finished jobs, their items deleted in batches of    RETENTION_JOBS_DAYS (365)
                       RETENTION_DELETE_BATCH rows per transaction
plan() lists the candidates (the dry run: `manage.py retention --dry-run`, the admin's retention page);
apply(plan) removes exactly those of them that are still eligible when it reaches them (a job resumed or
started since keeps what it needs). Nothing a pending, running or paused job still needs is listed. Each
kind's removal is logged (counts and bytes, no names) and audited (`retention.removed`, the entries' labels,
which name jobs, inboxes and folders the portal made, never a patient)."""
from __future__ import annotations

import logging

from apps.audit import record
from apps.core.retention import files, records
from apps.core.retention.candidate import Candidate, Outcome

log = logging.getLogger("apps.core.retention")
ACTOR = "retention"


__all__ = ["Candidate", "Outcome", "apply", "categories", "plan", "run"]


def categories():
    return [files.InboxArchives(), files.Quarantine(), files.DeliveredDownloads(), files.Reports(),
            records.IncompleteUploads(), records.JobRecords()]


def plan() -> list[Candidate]:
    """Every candidate of every kind, oldest first within a kind."""
    found = []
    for category in categories():
        found += sorted(category.candidates(), key=lambda c: (-c.age_days, c.key))
    return found


def apply(candidates: list[Candidate]) -> Outcome:
    """Remove the listed candidates that are still eligible; log and audit each kind once."""
    by_name = {category.name: category for category in categories()}
    outcome = Outcome()
    for name, category in by_name.items():
        mine = [c for c in candidates if c.category == name]
        if not mine:
            continue
        still = {c.key for c in category.candidates()}
        removed, failed = [], []
        for candidate in mine:
            if candidate.key not in still:
                outcome.kept.append(candidate)
                continue
            try:
                category.remove(candidate)
            except OSError as exc:
                failed.append((candidate, exc.strerror or type(exc).__name__))
                continue
            removed.append(candidate)
        outcome.removed += removed
        outcome.failed += failed
        _report(name, removed, failed)
    return outcome


def _report(name: str, removed: list[Candidate], failed: list[tuple[Candidate, str]]) -> None:
    if not removed and not failed:
        return
    size = sum(c.bytes for c in removed)
    rows = sum(c.rows for c in removed)
    log.info("retention removed %d %s (%d bytes, %d rows)%s", len(removed), name, size, rows,
             f"; {len(failed)} could not be removed" if failed else "")
    record(ACTOR, "retention.removed", f"retention:{name}", category=name, count=len(removed), bytes=size,
           rows=rows, entries=[c.label for c in removed],
           failed=[f"{c.label}: {why}" for c, why in failed])


def run() -> int:
    """The daily schedule: plan and apply. Returns how many entries were removed."""
    return len(apply(plan()).removed)
