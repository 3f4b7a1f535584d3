"""The de-identification through pydicom's Dataset: for what the byte walk (deid_stream.py) does not read
(big endian, deflated, files without a preamble), and the reference the tests compare the walk with."""
from __future__ import annotations

import datetime as dt
import io
import re

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from apps.dicom.deid_rules import (
    OPTION_DATES,
    PATIENT_ID,
    PATIENT_NAME,
    CannotDeidentify,
    Deidentified,
    Patient,
    Recipe,
    check_kind,
    cleans_descriptors,
    scrub_pattern,
)

DUMMY_TEXT = "ANONYMIZED"
DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000D", "IS": "0", "DS": "0",
         "PN": DUMMY_TEXT, "CS": DUMMY_TEXT, "SH": DUMMY_TEXT, "LO": DUMMY_TEXT, "ST": DUMMY_TEXT,
         "LT": DUMMY_TEXT, "UT": DUMMY_TEXT, "UC": DUMMY_TEXT, "AE": DUMMY_TEXT, "UR": ""}
TEXT_VRS = frozenset({"PN", "SH", "LO", "ST", "LT", "UT", "UC", "CS"})


class _Walk:
    """One instance's transform: the recipe, the patient and the identifiers to scrub from descriptors."""

    def __init__(self, recipe: Recipe, patient: Patient, scrub: list[str]):
        self.recipe = recipe
        self.patient = patient
        self.scrub = scrub_pattern(scrub)
        self.shift = dt.timedelta(days=patient.date_shift_days)

    def dataset(self, ds: Dataset) -> None:
        actions = self.recipe.actions
        shifting = OPTION_DATES in self.recipe.options
        for tag in list(ds.keys()):
            group = tag >> 16
            if group & 1:
                if not self._safe_private(ds, tag):
                    del ds[tag]
                continue
            if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF or tag & 0xFFFF == 0:
                del ds[tag]  # curves, overlays (their data and comments are X; the rest is no use alone)
                continue     # and group lengths (no longer true once values change)
            action = actions.get(tag)
            if tag == PATIENT_NAME or tag == PATIENT_ID:
                ds[tag].value = self.patient.pseudonym
                continue
            if action is None or action == "K":
                vr = self._vr(ds, tag)
                if vr == "SQ":
                    self._items(ds[tag])
                elif action is None and vr in ("DA", "DT"):
                    # Dates the table does not list move with the patient's, or go.
                    self._apply(ds, tag, "S" if shifting else "Z")
                continue
            self._apply(ds, tag, action)

    def _vr(self, ds: Dataset, tag: int) -> str | None:
        vr = ds.get_item(tag).VR
        if vr is None or vr.startswith(("US or", "OB or", "OW or")) or vr == "UN":
            try:
                return dictionary_VR(tag)
            except KeyError:
                return vr
        return vr

    def _items(self, elem: DataElement) -> None:
        for item in elem.value or ():
            self.dataset(item)

    def _apply(self, ds: Dataset, tag: int, action: str) -> None:
        if action == "X":
            del ds[tag]
            return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if action in ("Z",):
                elem.value = Sequence()
            else:  # D, C, Q, U on a sequence: keep its items, cleaned by the same rules
                self._items(elem)
            return
        if action == "Z" or action == "Q":  # Q (X/Z/U*) on something that is no sequence: emptied
            elem.value = None
        elif action == "U":
            value = elem.value
            if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
                elem.value = [self.recipe.uid(str(v)) for v in value]
            elif value:
                elem.value = self.recipe.uid(str(value))
        elif action == "S":
            elem.value = self._shifted(elem)
        elif action == "C":
            if vr in TEXT_VRS and elem.value and self.scrub is not None:
                elem.value = self._cleaned(elem.value)
        elif action == "D":
            elem.value = self._dummy(elem)

    def _dummy(self, elem: DataElement):
        vr = elem.VR
        if vr == "UI":
            return self.recipe.uid(str(elem.value)) if elem.value else elem.value
        if vr in DUMMY:
            return DUMMY[vr]
        if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"):
            return 0
        return b""  # OB, OW, UN and the other binary VRs

    def _shifted(self, elem: DataElement):
        vr = elem.VR
        if vr not in ("DA", "DT"):
            return elem.value  # times, ages: whole days moved, so they stay as they were
        values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
        out = []
        for v in values:
            text = str(v or "")
            try:
                day = dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8])) + self.shift
            except ValueError:
                if text:
                    return None  # a partial or broken date cannot be shifted: emptied, never kept
                out.append("")
                continue
            out.append(day.strftime("%Y%m%d") + (text[8:] if vr == "DT" else ""))
        return out if len(out) > 1 else (out[0] if out else None)

    def _cleaned(self, value):
        if isinstance(value, pydicom.multival.MultiValue):
            return [self._cleaned(v) for v in value]
        return self.scrub.sub("", str(value)).strip() if value is not None else value

    def _safe_private(self, ds: Dataset, tag: int) -> bool:
        element = tag & 0xFFFF
        if element < 0x0100:
            return element >= 0x10 and self.recipe.safe_private(tag >> 16, str(ds[tag].value), None)
        creator_tag = (tag & 0xFFFF0000) | (element >> 8)
        return creator_tag in ds and ds[tag].VR != "SQ" and \
            self.recipe.safe_private(tag >> 16, str(ds[creator_tag].value), element & 0xFF)


def _scrub_values(ds: Dataset) -> list[str]:
    """The patient's own identifiers, removed from descriptors that Clean Descriptors keeps."""
    found = []
    for keyword in ("PatientID", "AccessionNumber", "OtherPatientIDs", "PatientBirthDate"):
        value = ds.get(keyword)
        if value:
            found += [str(v) for v in (value if isinstance(value, pydicom.multival.MultiValue) else [value])]
    name = ds.get("PatientName")
    if name:
        for part in re.split(r"[\^=]", str(name)):
            if len(part.strip()) >= 2:
                found.append(part.strip())
    return [f for f in found if f.strip()]


def deidentify_dataset(ds: Dataset, recipe: Recipe, patient: Patient) -> None:
    """De-identify `ds` in place (file meta included). Raises HeldBack or CannotDeidentify."""
    check_kind(str(ds.get("SOPClassUID", "")), str(ds.get("BurnedInAnnotation", "") or ""), recipe)
    scrub = _scrub_values(ds) if cleans_descriptors(recipe) else []
    _Walk(recipe, patient, scrub).dataset(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = recipe.method_text()
    codes = []
    for value, meaning in recipe.method_codes():
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if OPTION_DATES in recipe.options else "REMOVED"
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformation", "PrivateInformationCreatorUID"):
            if keyword in meta:
                del meta[keyword]


def deidentify_with_pydicom(data: bytes, recipe: Recipe, patient_for) -> Deidentified:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        original_id = str(ds.get("PatientID", "") or "")
        if "SOPClassUID" not in ds:
            raise ValueError("no SOP Class UID")
    except Exception as exc:  # noqa: BLE001 - any parse failure is an unreadable file
        raise CannotDeidentify(f"unreadable DICOM ({type(exc).__name__})") from None
    # Held back or refused before the map hears of the patient, as on the byte walk.
    check_kind(str(ds.get("SOPClassUID", "")), str(ds.get("BurnedInAnnotation", "") or ""), recipe)
    patient = patient_for(original_id)
    deidentify_dataset(ds, recipe, patient)
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a value the original held in a form pydicom cannot write
        raise CannotDeidentify(f"could not write the de-identified instance ({type(exc).__name__})") from None
    return Deidentified(
        data=out.getvalue(), sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")), patient_id=patient.pseudonym,
        study_date=str(ds.get("StudyDate", "") or ""), modality=str(ds.get("Modality", "") or ""),
    )
