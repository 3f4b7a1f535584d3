"""Which studies a case-list row asks for, and what to expect of each: the row's C-FIND identifier, the
exact-match check of every study the PACS answers (some PACS match loosely, and wildcards widen a
query), and the plan of a study to retrieve (all of it or one series, and how many instances)."""
from __future__ import annotations

from dataclasses import dataclass

from apps.dicom.query import study_query


@dataclass
class StudyPlan:
    """What to retrieve of one study: all of it, or one of its series (`series_uid`), and how many
    instances that is."""

    study: object  # the C-FIND match (a pydicom Dataset)
    expected: int | None
    sops: set[str] | None = None  # the study's SOP Instance UIDs, when the PACS listed them
    series_uid: str | None = None
    instance_uids: tuple[str, ...] = ()  # a retry moving the missing instances of a series (IMAGE level)

    @property
    def uid(self) -> str:
        return str(self.study.StudyInstanceUID)

    @property
    def patient_id(self) -> str:
        """The PatientID the C-FIND answered for the study ("" when it named none)."""
        return str(self.study.get("PatientID", "") or "").strip()

    def move_query(self) -> tuple[str, dict[str, str]]:
        """(Query/Retrieve level, identifier) of the retrieve request."""
        if self.instance_uids:
            return "IMAGE", {"StudyInstanceUID": self.uid, "SeriesInstanceUID": self.series_uid or "",
                             "SOPInstanceUID": "\\".join(self.instance_uids)}
        if self.series_uid:
            return "SERIES", {"StudyInstanceUID": self.uid, "SeriesInstanceUID": self.series_uid}
        return "STUDY", {"StudyInstanceUID": self.uid}


def row_query(item) -> dict[str, str]:
    """The row's C-FIND identifier: the same builder as the query API, from the row's checked values."""
    return study_query({"PatientID": item.patient_id, "StudyDate": item.study_date, "Modality": item.modality,
                        "StudyInstanceUID": item.study_instance_uid,
                        "AccessionNumber": item.accession_number})


def values_of(study, keyword: str) -> list[str]:
    """The non-empty values of a (possibly multi-valued) attribute of a C-FIND match."""
    found = study.get(keyword, "")
    return [str(v).strip() for v in ([found] if isinstance(found, str) else list(found or [])) if str(v).strip()]


def row_mismatch(item, study) -> str | None:
    """Why a study the PACS answered is not what the row asked for (some PACS match loosely, and C-FIND
    wildcards widen a query), or None when it matches exactly."""
    patient_id = str(study.get("PatientID", "") or "").strip()
    if item.patient_id and patient_id != item.patient_id:
        return "the PACS returned a study of another patient"
    if item.study_instance_uid and str(study.get("StudyInstanceUID", "")) != item.study_instance_uid:
        return "the PACS returned another study than the row's StudyInstanceUID"
    accession = item.accession_number
    if accession and str(study.get("AccessionNumber", "") or "").strip() != accession:
        return "the PACS returned a study with another AccessionNumber"
    if item.study_date:
        first, _, last = item.study_date.partition("-") if "-" in item.study_date else (item.study_date,) * 3
        date = str(study.get("StudyDate", "") or "").strip()
        if not date or (first and date < first) or (last and date > last):
            return "the PACS returned a study dated outside the row's StudyDate"
    modalities = values_of(study, "ModalitiesInStudy")
    if item.modality and modalities and item.modality not in modalities:
        return "the PACS returned a study without the row's modality"
    return None


def plan_for(assoc, study) -> StudyPlan:
    """NumberOfStudyRelatedInstances when the PACS gives it; else the instances listed at IMAGE level."""
    value = str(study.get("NumberOfStudyRelatedInstances", "") or "").strip()
    if value.isdigit():
        return StudyPlan(study, int(value))
    sops = list_instances(assoc, str(study.StudyInstanceUID))
    return StudyPlan(study, len(sops), sops)


def list_instances(assoc, study_uid: str, series_uid: str | None = None) -> set[str]:
    query = {"StudyInstanceUID": study_uid, "SOPInstanceUID": ""}
    if series_uid:
        query["SeriesInstanceUID"] = series_uid
    return {str(ds.SOPInstanceUID) for ds in assoc.find("IMAGE", query) if "SOPInstanceUID" in ds}


def modality_label(item, study) -> str:
    return item.modality or "-".join(sorted(set(values_of(study, "ModalitiesInStudy")))) or "ALL"
