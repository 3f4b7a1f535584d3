"""The catalog rebuilt from the files: every file a registered source claims (sources.py) is read again and
its row written as the filing wrote it; rows of files no longer on disk (or no longer claimed) go.
Idempotent: a second run changes nothing."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

from django.db import transaction

from apps.catalog.filing import BATCH, UPDATED
from apps.catalog.models import Instance
from apps.catalog.roots import Confinement
from apps.catalog.sources import Claim, registered
from apps.dicom.catalog_entry import EntryError, read_entry

log = logging.getLogger(__name__)


@dataclass
class Rebuilt:
    written: int = 0
    removed: int = 0
    skipped: list[str] = field(default_factory=list)


def claims() -> dict[str, Claim]:
    """Every claimed file by path; a later source's claim of one path wins (none overlap in practice)."""
    found: dict[str, Claim] = {}
    for name, source in sorted(registered().items()):
        for claim in source():
            found[claim.path] = claim
    return found


def rebuild(progress: Callable[[int, int], None] | None = None) -> Rebuilt:
    claimed = claims()
    outcome, kept = Rebuilt(), set()
    paths = sorted(claimed)
    confined = Confinement()
    for start in range(0, len(paths), BATCH):
        rows = []
        for path in paths[start:start + BATCH]:
            claim, there = claimed[path], confined.regular_file(os.path.abspath(path))
            if there is None:
                outcome.skipped.append(f"{path}: not a regular file inside the data folders and import roots")
                continue
            resolved = there[0]
            try:
                values = read_entry(resolved)
            except EntryError as exc:
                outcome.skipped.append(f"{path}: {exc}")
                continue
            rows.append(Instance(path=str(resolved), source=claim.source, job_app=claim.job_app,
                                 job_id=claim.job_id, owner_id=claim.owner_id, **values))
        # a source that cannot tell the job (a received zip's members) keeps the job the filing recorded
        unknown = {row.path: row for row in rows if not row.job_app}
        for path, job_app, job_id in Instance.objects.filter(path__in=list(unknown)).exclude(job_app="").values_list(
                "path", "job_app", "job_id"):
            unknown[path].job_app, unknown[path].job_id = job_app, job_id
        kept.update(row.path for row in rows)
        with transaction.atomic():
            Instance.objects.bulk_create(rows, update_conflicts=True, unique_fields=["path"], update_fields=UPDATED)
        outcome.written += len(rows)
        if progress:
            progress(min(start + BATCH, len(paths)), len(paths))
    stale = [pk for pk, path in Instance.objects.values_list("pk", "path").iterator() if path not in kept]
    for start in range(0, len(stale), BATCH):
        outcome.removed += Instance.objects.filter(pk__in=stale[start:start + BATCH]).delete()[0]
    return outcome
