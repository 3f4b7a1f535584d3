"""What a row's run leaves on its item: what it holds now (kept and fetched, where each study was found) and
this run's numbers appended to the runs before it, so the report says what each attempt fetched."""
from __future__ import annotations

from apps.retrieval.outcomes import RowOutcome, StudyOutcome


def record_attempt(item, ctx, outcome: RowOutcome) -> None:
    """What the row holds now (kept and fetched) on the item, and this attempt's numbers appended to the
    attempts of the row's earlier runs (item.result["attempts"])."""
    root = item.job.downloads_root()
    earlier = item.result.get("attempts", []) if isinstance(item.result, dict) else []
    item.expected, item.instances = outcome.expected, outcome.received + outcome.kept
    item.bytes = outcome.bytes + outcome.kept_bytes
    item.path = "; ".join(sorted({str(s.folder.relative_to(root)) for s in outcome.studies}))[:500]
    item.result = {"studies": [study_result(s) for s in outcome.studies],
                   "skipped": [{"StudyInstanceUID": uid, "reason": why} for uid, why in outcome.skipped],
                   "attempts": [*earlier, {"attempt": len(earlier) + 1, "fetched": outcome.received,
                                           "bytes": outcome.bytes, "kept": outcome.kept}][-20:]}
    if item.server_list:  # a row searched on several servers: where each study was found (fetched from the first)
        item.result["found_on"] = {uid: names for uid, names in outcome.found_on.items()}
        for study in item.result["studies"]:
            study["Server"] = outcome.found_on.get(study["StudyInstanceUID"], [""])[0]
    # Written with the row's outcome (in one transaction with it and the other rows' of the worker's batch,
    # apps/jobs/batch.py), and only while the row is still this run's: a run that lost it to another worker
    # never overwrites that one's. The result is always written with the outcome.
    ctx.save_with_outcome("expected", "instances", "bytes", "path")


def study_result(s: StudyOutcome) -> dict:
    return {"StudyInstanceUID": s.study_instance_uid, "expected": s.expected, "received": s.received,
            "folder": str(s.folder), "quarantined": s.foreign, "quarantine": s.quarantine, "withheld": s.withheld,
            **({"SeriesInstanceUID": s.series_instance_uid} if s.series_instance_uid else {}),
            **({"kept": s.kept} if s.kept else {})}
