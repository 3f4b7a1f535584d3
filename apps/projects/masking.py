"""How a project's job shows what it was asked for: the originals a user typed or a PACS answered (PatientID,
StudyInstanceUID, study dates) replaced by the project's values (pseudonym, new UID, shifted date), so no
body, report or message of the job puts an original next to a pseudonym. The values are the ones the
de-identified files carry: the same map, the same keyed UIDs, the same per-patient date shift."""
from __future__ import annotations

import datetime as dt
import json
import re

from apps.dicom import deidentify
from apps.dicom.deid_dataset import deidentify_dataset

NOT_SHOWN = "(the row as written is not shown: the job de-identifies for a research project)"
UID_LIKE = re.compile(r"(?<![\w.])(?!2\.25\.)[0-9]+(?:\.[0-9]+){2,}(?![\w.])")
QUOTED = re.compile(r"'[^']*'")
DAY = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


class Mask:
    def __init__(self, project):
        self.project = project
        self.recipe = project.recipe()
        self._patients: dict[str, deidentify.Patient] = {}

    def patient(self, patient_id: str) -> deidentify.Patient | None:
        if not patient_id:
            return None
        found = self._patients.get(patient_id)
        if found is None:
            found = self._patients[patient_id] = self.project.patient(patient_id)
        return found

    def pseudonym(self, patient_id: str) -> str:
        patient = self.patient(patient_id)
        return patient.pseudonym if patient else ""

    def uid(self, uid: str) -> str:
        return self.recipe.uid(uid) if uid else ""

    def date(self, value: str, patient_id: str) -> str:
        """Each day in `value` (YYYYMMDD or YYYY-MM-DD, a range too) moved by the patient's shift with the
        dates option; without it, or without a patient to shift by, dates are not shown."""
        if not value:
            return ""
        patient = self.patient(patient_id)
        if deidentify.OPTION_DATES not in self.recipe.options or patient is None:
            return "(date not shown)"

        def moved(match) -> str:
            try:
                day = dt.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                return "(date not shown)"
            return (day + dt.timedelta(days=patient.date_shift_days)).strftime("%Y%m%d")
        return DAY.sub(moved, value)

    def text(self, text: str, patient_ids=(), dates=()) -> str:
        """A message with the row's PatientIDs replaced by their pseudonyms, its dates by the shifted ones,
        and every UID by the project's."""
        if not text:
            return text
        for patient_id in sorted({p for p in patient_ids if p}, key=len, reverse=True):
            text = text.replace(patient_id, self.pseudonym(patient_id))
        text = UID_LIKE.sub(lambda m: self.uid(m[0]), text)
        shift_for = next((p for p in patient_ids if p), "")
        for value in sorted({d for d in dates if d}, key=len, reverse=True):
            text = text.replace(value, self.date(value, shift_for))
        return text

    def retrieval_row(self, row: dict, patient_id: str, study_date: str) -> dict:
        """A retrieval row as the API or the report shows it (keys PatientID, StudyDate, StudyInstanceUID,
        error/reason, result, text), for a project: the project's values only."""
        shown = dict(row)
        if "PatientID" in shown:
            shown["PatientID"] = self.pseudonym(patient_id)
        if "StudyDate" in shown:
            shown["StudyDate"] = self.date(study_date, patient_id)
        if shown.get("StudyInstanceUID"):
            shown["StudyInstanceUID"] = self.uid(shown["StudyInstanceUID"])
        for key in ("error", "reason", "path"):
            if shown.get(key):
                shown[key] = self.text(shown[key], [patient_id], [study_date])
        if shown.get("result"):
            shown["result"] = json.loads(self.text(json.dumps(shown["result"]), [patient_id], [study_date]))
        if shown.get("text"):  # a bad row: neither the row as written nor the values its reason quotes
            shown["text"] = NOT_SHOWN
            for key in ("reason", "message"):
                if shown.get(key):
                    shown[key] = self.text(QUOTED.sub("'…'", shown[key]))
        return shown

    def found_study(self, row: dict, patient_id: str) -> dict:
        """A query's found study (results.as_row's keys) as the project's files of it would say it: the
        values run through the project's own transform (accession number emptied, descriptions removed or,
        with Clean Descriptors, cut of the patient's identifiers the row knows, times as the profile keeps
        them), the StudyInstanceUID mapped, the date shifted by the row's patient (or not shown)."""
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.PatientID = patient_id or ""
        ds.StudyInstanceUID = row.get("StudyInstanceUID") or ""
        for keyword in ("StudyTime", "StudyDescription", "AccessionNumber"):
            setattr(ds, keyword, row.get(keyword) or "")
        deidentify_dataset(ds, self.recipe, self.patient(patient_id) or deidentify.Patient(""))
        shown = dict(row)
        shown["StudyInstanceUID"] = self.uid(row.get("StudyInstanceUID") or "")
        shown["StudyDate"] = self.date(row.get("StudyDate") or "", patient_id)
        for keyword in ("StudyTime", "StudyDescription", "AccessionNumber"):
            shown[keyword] = str(ds.get(keyword, "") or "")
        return shown
