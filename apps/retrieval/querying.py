"""A query job's row: the row's C-FIND, the studies that match it exactly recorded as FoundStudy rows, and
the row flagged when it found nothing or more than its MaxStudies. A row naming several servers is searched
on each in its order; a row choosing series records, per study, the series it chose. Nothing is moved: no C-MOVE, no C-GET.
An AccessionNumber row whose studies belong to more than one patient is flagged and records nothing (so
nothing of it can be retrieved from the results); a retrieval job's such row, or one matching more studies
than its MaxStudies, fails before any move (check_before_moving)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from apps.dicom.scu import find_association
from apps.jobs.errors import ItemCanceled, ItemFailed
from apps.retrieval.fanout import names_of, row_servers
from apps.retrieval.models import FoundStudy
from apps.retrieval.plans import row_mismatch, row_query, values_of
from apps.retrieval.series import chosen_series, count_of, nothing_chosen
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


def _matching(item, studies, earlier: set | None = None) -> tuple[list, int]:
    """The studies that match the row exactly, each once, and how many answers were left out. UIDs in
    `earlier` (found on the row's earlier servers) are left out without counting; it is extended."""
    earlier = set() if earlier is None else earlier
    kept, seen = [], set()
    for study in studies:
        uid = _text(study, "StudyInstanceUID", 64)
        if row_mismatch(item, study) or not uid or uid in seen:
            continue
        seen.add(uid)
        if uid not in earlier:
            kept.append(study)
    earlier |= seen
    return kept, len(studies) - len(seen)


@dataclass
class Look:
    """What a row's C-FINDs found over its servers: each matching study once, with the server it was first
    found on, every server it was found on, and (for a row choosing series) the series it chose of it."""

    studies: list = field(default_factory=list)  # (server, study, chosen series or None)
    found_on: dict = field(default_factory=dict)  # StudyInstanceUID -> [server names]
    skipped: int = 0
    searched: list = field(default_factory=list)


def _look(item, ctx, *, series: bool = False) -> Look:
    """The row's C-FIND on each of its servers in order (inside each server's association limit)."""
    look, seen = Look(), set()
    for server in row_servers(item, ctx):
        look.searched.append(server)
        with ctx.association_slot(server):
            with find_association(server.as_peer(), local_ae()) as assoc:
                answers = assoc.find("STUDY", row_query(item))
                for study in answers:
                    uid = _text(study, "StudyInstanceUID", 64)
                    if uid and not row_mismatch(item, study) and server.name not in look.found_on.get(uid, []):
                        look.found_on.setdefault(uid, []).append(server.name)
                matching, skipped = _matching(item, answers, seen)
                look.skipped += skipped
                for study in matching:
                    chosen = chosen_series(assoc, item, _text(study, "StudyInstanceUID", 64)) if series else None
                    look.studies.append((server, study, chosen))
    return look


def _find(item, ctx) -> list:
    return [study for _, study, _ in _look(item, ctx).studies]


def check_before_moving(item, ctx) -> None:
    """Before a retrieval row with an AccessionNumber or a MaxStudies moves anything: fail it if its
    accession number matches studies of more than one patient, or it matches more studies than MaxStudies."""
    if item.accession_number or item.max_studies is not None:
        matching = _find(item, ctx)
        refusal = accession_refusal(item, matching)
        if not refusal and item.max_studies is not None and len(matching) > item.max_studies:
            refusal = f"{flag_for(item, len(matching))}; refused, nothing fetched"
        if refusal:
            raise ItemFailed(refusal)


def query_row(item, ctx) -> list[FoundStudy]:
    """Run the row's C-FIND on each of its servers (inside each server's association limit) and record what
    it found: each study once, under the first server that has it, with every server it was found on. A row
    choosing series records the studies with a chosen series, and how many series and instances it chose.
    Studies the PACS answered that do not match the row exactly (a loose PACS) are left out and counted in
    the item's result. Re-running the row replaces what an earlier run recorded."""
    look = _look(item, ctx, series=item.chooses_series())
    if ctx.should_stop():
        raise ItemCanceled()
    studies = [study for _, study, _ in look.studies]
    refusal = accession_refusal(item, studies)
    found = [] if refusal else [_recorded(item, server, study, chosen, look.found_on)
                                for server, study, chosen in look.studies if chosen is None or chosen]
    flag = refusal or flag_for(item, len(found))
    if not refusal and not found and studies:  # studies were found, but none has a series the row chooses
        flag = nothing_chosen(item, names_of(look.searched), len(studies))
    elif not found and len(look.searched) > 1:
        flag = f"no study on {names_of(look.searched)} matches line {item.line}"
    item.flag = flag[:200]
    item.expected = sum((f.instances if f.chosen_instances is None else f.chosen_instances) or 0 for f in found)
    item.result = {"studies": len(found), "skipped": look.skipped}
    # Written with the row's outcome, in bulk with the other rows of the worker's batch, and only while
    # the row is still this worker's (apps/jobs/batch.py).
    ctx.save_with_outcome("flag", "expected")
    ctx.write_with_outcome(replace_found, found)
    return found


def replace_found(rows) -> None:
    """What query rows found, `[(item, [FoundStudy, ...]), ...]`, in place of what earlier runs of the
    same rows recorded: one delete and one insert for the lot (inside the runner's outcome transaction)."""
    FoundStudy.objects.filter(item_id__in=[item.pk for item, _ in rows]).delete()
    FoundStudy.objects.bulk_create([study for _, found in rows for study in found])


def _recorded(item, server, study, chosen, found_on) -> FoundStudy:
    found = found_study(item, study)
    found.server_name = server.name
    found.found_on = "|".join(found_on.get(found.study_instance_uid, [server.name]))[:200]
    if chosen is not None:
        counts = [count_of(series) for series in chosen]
        found.chosen_series = len(chosen)
        found.chosen_instances = None if None in counts else sum(counts)
    return found
