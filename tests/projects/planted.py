"""Synthetic instances with identifiers planted wherever a careless de-identifier misses them, and the
search for any of them in the raw bytes of a result, in every character set they could be encoded in."""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
# Patient names per character set: (SpecificCharacterSet, PatientName)
NAMES = {
    "ISO_IR 192": ("ISO_IR 192", "Müllerstein^Jürgen=ミュラー^ユルゲン"),
    "ISO 2022 IR 149": ("\\ISO 2022 IR 149", "Hongplant^Gildong=洪^吉洞=홍^길동"),
    "ISO_IR 100": ("ISO_IR 100", "Weißplant^Zoë"),
}
PATIENT_ID = "PLANT-ID-4711"
# Every planted value (besides the name): found anywhere in the output, de-identification failed.
PLANTED = [
    PATIENT_ID, "PLANT-OTHER-0815", "PLANTISSUER", "Drplantref", "Plantinstitute", "Plantstreet",
    "Plantoperator", "PLANTACC99", "PLANTREQ77", "PLANTSPS66", "Plantcomment", "Plantprivate",
    "Plantroad", "555-7526", "PLANTSTATION", "PLANTSN123", "Plantperformer", "Plantreqdesc",
    "19600101", "20200301", "20200302", "20200228", "20200303", "Plantmother",
]
STUDY_UID = "1.2.826.0.1.3680043.8.498.77001"


def name_tokens(name: str) -> list[str]:
    parts = [p for p in name.replace("=", "^").split("^") if p]
    return parts


def encodings_of(token: str) -> set[bytes]:
    """The byte forms a token could take in a file: UTF-8, Latin-1, the Korean and Japanese sets."""
    forms = set()
    for codec in ("utf-8", "latin-1", "euc_kr", "iso2022_jp", "shift_jis", "utf-16-le"):
        try:
            forms.add(token.encode(codec))
        except UnicodeEncodeError:
            continue
    if token.isascii():
        forms |= {token.upper().encode(), token.lower().encode()}
    return {f for f in forms if len(f) >= 2}


def leaks(data: bytes, charset: str) -> list[str]:
    """The planted values found in `data` (each of their encodings; ASCII ones case-insensitive)."""
    found = []
    lowered = data.lower()
    for token in PLANTED + name_tokens(NAMES[charset][1]):
        for form in encodings_of(token):
            haystack = lowered if form.isascii() else data
            needle = form.lower() if form.isascii() else form
            if needle in haystack:
                found.append(token)
                break
    return found


def _item(**values) -> Dataset:
    item = Dataset()
    for key, value in values.items():
        setattr(item, key, value)
    return item


def planted_dataset(charset: str = "ISO_IR 192", *, sop_uid: str = "1.2.826.0.1.3680043.8.498.77003",
                    study_date: str = "20200301", burned_in: str | None = None, sop_class: str = CT) -> Dataset:
    specific, name = NAMES[charset]
    ds = Dataset()
    ds.SpecificCharacterSet = specific.split("\\") if "\\" in specific else specific
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate, ds.ContentDate = study_date, "20200302", "20200302", \
        "20200303"
    ds.StudyTime, ds.AcquisitionDateTime = "101500", "20200302101600"
    ds.AccessionNumber, ds.Modality = "PLANTACC99", "CT"
    ds.InstitutionName, ds.InstitutionAddress = "Plantinstitute Hospital", "Plantstreet 12 Plantcity"
    ds.ReferringPhysicianName = "Drplantref^Referrer"
    ds.StationName, ds.StudyDescription, ds.SeriesDescription = "PLANTSTATION", "CT Thorax", "Axial 5mm"
    ds.OperatorsName = "Plantoperator^Olaf"
    ds.PerformingPhysicianName = "Plantperformer^Paula"
    ds.PatientName, ds.PatientID = name, PATIENT_ID
    ds.IssuerOfPatientID = "PLANTISSUER"
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge, ds.PatientWeight = "19600101", "F", "060Y", 71
    ds.PatientAddress, ds.PatientTelephoneNumbers = "Plantroad 5", "555-7526"
    ds.PatientMotherBirthName = "Plantmother^Maria"
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID="PLANT-OTHER-0815", IssuerOfPatientID="PLANTISSUER",
                                                 TypeOfPatientID="TEXT")])
    ds.DeviceSerialNumber = "PLANTSN123"
    ds.StudyComments = "Plantcomment: patient " + name_tokens(name)[0] + " " + PATIENT_ID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, "1.2.826.0.1.3680043.8.498.77002"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77004"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "PLANTACC99", 1, 1
    ds.RequestAttributesSequence = Sequence([_item(
        RequestedProcedureID="PLANTREQ77", ScheduledProcedureStepID="PLANTSPS66",
        RequestedProcedureDescription="Plantreqdesc", ScheduledProcedureStepStartDate="20200228")])
    # A kept sequence with a date inside (the longitudinal option must move it too).
    ds.RadiopharmaceuticalInformationSequence = Sequence([_item(
        RadiopharmaceuticalStartDateTime="20200302091500", RadionuclideTotalDose=100)])
    ds.ReferencedImageSequence = Sequence([_item(ReferencedSOPClassUID=CT,
                                                 ReferencedSOPInstanceUID="1.2.826.0.1.3680043.8.498.77009")])
    block = ds.private_block(0x0009, "PLANT CORP", create=True)
    block.add_new(0x01, "LO", "Plantprivate " + name_tokens(name)[0])
    block.add_new(0x02, "SQ", Sequence([_item(PatientID=PATIENT_ID)]))
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(64, dtype="<u2").tobytes()
    return ds


def as_file(ds: Dataset, syntax=ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.SourceApplicationEntityTitle = "PLANTSTATION"
    ds.file_meta = meta
    out = io.BytesIO()
    if syntax == ExplicitVRBigEndian:
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    ds.save_as(out, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=syntax != ExplicitVRBigEndian,
               enforce_file_format=True)
    return out.getvalue()


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def retrieval_layout(root, server: str):
    """The folder a retrieval files a de-identified instance in: <root>/<SERVER>/<date>_<pseudonym>_<modality>."""
    from apps.retrieval.layout import study_folder

    return lambda result: study_folder(root, server, result.study_date, result.patient_id, result.modality)


def shift_safe(project):
    """Re-key a new project until the planted patient's date shift cannot move one planted date onto
    another (they lie within 5 days of each other): a shifted date equal to a planted one by chance is
    not a leak, and would make the byte search fail at random."""
    from apps.dicom.deidentify import patient_keys
    from apps.projects.models import new_secret

    while abs(patient_keys(bytes.fromhex(project.secret), project.name, PATIENT_ID,
                           project.max_date_shift_days).date_shift_days) <= 5:
        project.secret = new_secret()
    project.save(update_fields=["secret"])
    return project
