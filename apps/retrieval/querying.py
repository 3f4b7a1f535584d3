"""A query job's row: the row's C-FIND, the studies that match it exactly recorded as FoundStudy rows, and
the row flagged when it found nothing or more than its MaxStudies. Nothing is moved: no C-MOVE, no C-GET."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction

from apps.dicom.engines import FIND_ASSOCIATIONS
from apps.jobs.errors import ItemCanceled
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


def query_row(item, ctx) -> list[FoundStudy]:
    """Run the row's C-FIND on its server (inside the server's association limit) and record what it
    found. Studies the PACS answered that do not match the row exactly (a loose PACS) are left out and
    counted in the item's result. Re-running the row replaces what an earlier run recorded."""
    server = item.dicom_server
    with ctx.association_slot(server):
        with FIND_ASSOCIATIONS[settings.FIND_ENGINE](server.as_peer(), local_ae()) as assoc:
            studies = assoc.find("STUDY", row_query(item))
    if ctx.should_stop():
        raise ItemCanceled()
    found, skipped, seen = [], 0, set()
    for study in studies:
        uid = _text(study, "StudyInstanceUID", 64)
        if row_mismatch(item, study) or not uid or uid in seen:
            skipped += 1
            continue
        seen.add(uid)
        found.append(found_study(item, study))
    with transaction.atomic():
        FoundStudy.objects.filter(item=item).delete()
        FoundStudy.objects.bulk_create(found)
    item.flag = flag_for(item, len(found))
    item.expected = sum(f.instances or 0 for f in found)
    item.result = {"studies": len(found), "skipped": skipped}
    item.save(update_fields=["flag", "expected", "result"])
    return found
