"""The retrieved files, for `catalog rebuild`: every file under DOWNLOADS_DIR (received/ aside: the
delivery's), claimed by the retrieval job whose row filed its study folder (the latest one, as the
filing's last write left the row)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

from apps.catalog.sources import Claim
from apps.dicom.paths import Skipped, walk
from apps.retrieval.models import RetrievalItem

JOB = "retrieval.retrievaljob"


def claims():
    root = Path(settings.DOWNLOADS_DIR).resolve()
    folders: dict[str, tuple[int, int | None]] = {}
    items = RetrievalItem.objects.exclude(result={}).order_by("pk").values_list("job_id", "job__created_by_id", "result")
    for job_id, owner_id, result in items.iterator():
        for study in (result or {}).get("studies", []) if isinstance(result, dict) else []:
            if study.get("folder"):
                folders[str(Path(study["folder"]).resolve())] = (job_id, owner_id)
    if not root.is_dir():
        return
    for found in walk(root, [root], skip_hidden=True):
        if isinstance(found, Skipped) or found.relative_to(root).parts[0] == "received":
            continue
        job_id, owner_id = folders.get(str(found.parent.resolve()), ("", None))
        yield Claim(str(found.resolve()), "retrieved", JOB if job_id else "", str(job_id), owner_id)
