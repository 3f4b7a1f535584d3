"""Imported patients: created once per PatientID (a unique key, so concurrent imports share one row),
and never silently changed: a header that disagrees with the stored patient is reported instead."""
from __future__ import annotations

import datetime as dt

from apps.dicom.header import ImageHeader
from apps.imports.models import ImportedPatient, ImportJob


def birth_date(header: ImageHeader) -> dt.date | None:
    try:
        return dt.datetime.strptime(header.birth_date, "%Y%m%d").date() if header.birth_date else None
    except ValueError:
        return None


def ensure_patients(headers: dict[str, ImageHeader], job: ImportJob) -> dict[str, ImportedPatient]:
    """The patient row of every PatientID given (with the first header seen for each), created when
    missing. get_or_create rides on the unique PatientID: of two imports creating one patient at the
    same moment, one inserts and the other reads the row that won."""
    patients = {p.patient_id: p for p in ImportedPatient.objects.filter(patient_id__in=list(headers))}
    for patient_id, header in headers.items():
        if patient_id not in patients:
            patients[patient_id], _ = ImportedPatient.objects.get_or_create(
                patient_id=patient_id,
                defaults={"name": header.patient_name, "birth_date": birth_date(header), "sex": header.sex,
                          "first_job": job})
    return patients


def disagreement(patient: ImportedPatient, header: ImageHeader) -> str:
    """Words for a header whose name or birth date differs from the stored patient's ("" if none)."""
    differences = []
    if header.patient_name and patient.name and header.patient_name != patient.name:
        differences.append(f"name {header.patient_name!r} (stored: {patient.name!r})")
    born = birth_date(header)
    if born and patient.birth_date and born != patient.birth_date:
        differences.append(f"birth date {born.isoformat()} (stored: {patient.birth_date.isoformat()})")
    if not differences:
        return ""
    return (f"the header disagrees with stored patient {patient.patient_id}: " + ", ".join(differences)
            + "; the stored patient was kept")
