"""A query job's row: the row's C-FIND, the studies that match it exactly recorded as FoundStudy rows, and
the row flagged when it found nothing or more than its MaxStudies. Nothing is moved: no C-MOVE, no C-GET.
An AccessionNumber row whose studies belong to more than one patient is flagged and records nothing (so
nothing of it can be retrieved from the results); a retrieval job's such row, or one matching more studies
than its MaxStudies, fails before any move (check_before_moving)."""
from __future__ import annotations

from collections import Counter

from django.db import transaction

from apps.dicom.scu import find_association
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.retrieval.models import FoundStudy
from apps.retrieval.plans import row_mismatch, row_query, values_of
from apps.servers.models import local_ae


def _text(study, keyword: str, most: int) -> str:
    return str(study.get(keyword, "") or "").strip()[:most]


def _count(study, keyword: str) -> int | None:
    value = _text(study, keyword, 12)
    return int(value) if value.isdigit() else None


def found_study(item, study) -> FoundStudy:
    return FoundStudy(item=item, line=item.line, server_name=item.server_name,
                      study_instance_uid=_text(study, "StudyInstanceUID", 64),
                      study_date=_text(study, "StudyDate", 8), study_time=_text(study, "StudyTime", 16),
                      modalities="\\".join(sorted(set(values_of(study, "ModalitiesInStudy"))))[:100],
                      description=_text(study, "StudyDescription", 64),
                      accession_number=_text(study, "AccessionNumber", 16),
                      series=_count(study, "NumberOfStudyRelatedSeries"),
                      instances=_count(study, "NumberOfStudyRelatedInstances"))


def flag_for(item, found: int) -> str:
    if not found:
        return f"no study on {item.server_name} matches line {item.line}"
    if item.max_studies is not None and found > item.max_studies:
        return f"{found} studies found, more than MaxStudies {item.max_studies}"
    return ""


def accession_refusal(item, studies) -> str:
    """Why an AccessionNumber row must not go on: its studies belong to more than one patient (an accession
    number reused, or mistyped into another's). The counts are given, never the patients' identifiers."""
    if not item.accession_number:
        return ""
    counts = Counter(_text(study, "PatientID", 64) for study in studies)
    if len(counts) < 2:
        return ""
    per_patient = " and ".join(str(n) for n in sorted(counts.values(), reverse=True))
    return (f"AccessionNumber {item.accession_number} matches studies of {len(counts)} patients ({per_patient} "
            "studies); refused, nothing fetched: add the row's PatientID")


def _matching(item, studies) -> tuple[list, int]:
    """The studies that match the row exactly, each once, and how many answers were left out."""
    kept, seen = [], set()
    for study in studies:
        uid = _text(study, "StudyInstanceUID", 64)
        if row_mismatch(item, study) or not uid or uid in seen:
            continue
        seen.add(uid)
        kept.append(study)
    return kept, len(studies) - len(kept)


def _find(item, ctx) -> list:
    server = item.dicom_server
    with ctx.association_slot(server):
        with find_association(server.as_peer(), local_ae()) as assoc:
            return assoc.find("STUDY", row_query(item))


def check_before_moving(item, ctx) -> None:
    """Before a retrieval row with an AccessionNumber or a MaxStudies moves anything: fail it if its
    accession number matches studies of more than one patient, or it matches more studies than MaxStudies."""
    if item.accession_number or item.max_studies is not None:
        matching = _matching(item, _find(item, ctx))[0]
        refusal = accession_refusal(item, matching)
        if not refusal and item.max_studies is not None and len(matching) > item.max_studies:
            refusal = f"{flag_for(item, len(matching))}; refused, nothing fetched"
        if refusal:
            raise ItemFailed(refusal)


def query_row(item, ctx) -> list[FoundStudy]:
    """Run the row's C-FIND on its server (inside the server's association limit) and record what it
    found. Studies the PACS answered that do not match the row exactly (a loose PACS) are left out and
    counted in the item's result. Re-running the row replaces what an earlier run recorded."""
    studies = _find(item, ctx)
    if ctx.should_stop():
        raise ItemCanceled()
    matching, skipped = _matching(item, studies)
    refusal = accession_refusal(item, matching)
    found = [] if refusal else [found_study(item, study) for study in matching]
    with transaction.atomic():
        FoundStudy.objects.filter(item=item).delete()
        FoundStudy.objects.bulk_create(found)
    item.flag = refusal[:200] or flag_for(item, len(found))
    item.expected = sum(f.instances or 0 for f in found)
    item.result = {"studies": len(found), "skipped": skipped}
    item.save(update_fields=["flag", "expected", "result"])
    return found
