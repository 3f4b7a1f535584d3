"""The attributes DICOMweb searches return, per level (PS3.18 tables 10.6.3-3 to -5), how each maps to
a catalog field, and how values become DICOM JSON (PS3.18 F.2)."""
from __future__ import annotations

# keyword -> (tag, VR, catalog field)
ATTRIBUTES = {
    "SpecificCharacterSet": ("00080005", "CS", None),
    "StudyDate": ("00080020", "DA", "study_date"),
    "StudyTime": ("00080030", "TM", "study_time"),
    "AccessionNumber": ("00080050", "SH", "accession_number"),
    "InstanceAvailability": ("00080056", "CS", None),
    "ModalitiesInStudy": ("00080061", "CS", None),
    "ReferringPhysicianName": ("00080090", "PN", "referring_physician_name"),
    "StudyDescription": ("00081030", "LO", "study_description"),
    "RetrieveURL": ("00081190", "UR", None),
    "PatientName": ("00100010", "PN", "patient_name"),
    "PatientID": ("00100020", "LO", "patient_id"),
    "PatientBirthDate": ("00100030", "DA", "patient_birth_date"),
    "PatientSex": ("00100040", "CS", "patient_sex"),
    "StudyInstanceUID": ("0020000D", "UI", "study_instance_uid"),
    "StudyID": ("00200010", "SH", "study_id"),
    "NumberOfStudyRelatedSeries": ("00201206", "IS", None),
    "NumberOfStudyRelatedInstances": ("00201208", "IS", None),
    "Modality": ("00080060", "CS", "modality"),
    "SeriesDescription": ("0008103E", "LO", "series_description"),
    "SeriesInstanceUID": ("0020000E", "UI", "series_instance_uid"),
    "SeriesNumber": ("00200011", "IS", "series_number"),
    "NumberOfSeriesRelatedInstances": ("00201209", "IS", None),
    "SOPClassUID": ("00080016", "UI", "sop_class_uid"),
    "SOPInstanceUID": ("00080018", "UI", "sop_instance_uid"),
    "AvailableTransferSyntaxUID": ("00083002", "UI", "transfer_syntax_uid"),
    "InstanceNumber": ("00200013", "IS", "instance_number"),
    "Rows": ("00280010", "US", "rows"),
    "Columns": ("00280011", "US", "columns"),
    "NumberOfFrames": ("00280008", "IS", "frames"),
}
BY_TAG = {tag: keyword for keyword, (tag, _, _) in ATTRIBUTES.items()}

STUDY = ["SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
         "ModalitiesInStudy", "ReferringPhysicianName", "StudyDescription", "RetrieveURL", "PatientName",
         "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
         "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
SERIES = ["SpecificCharacterSet", "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
          "NumberOfSeriesRelatedInstances", "RetrieveURL", "InstanceAvailability"]
INSTANCE = ["SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "AvailableTransferSyntaxUID",
            "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "RetrieveURL", "InstanceAvailability"]
# What a search at a level may match on (the level's own attributes and those of the levels above).
STUDY_MATCH = ["StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
               "StudyDescription", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
               "StudyInstanceUID", "StudyID"]
SERIES_MATCH = ["Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber"]
INSTANCE_MATCH = ["SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns"]


def keyword_of(name: str) -> str | None:
    """A query key as a keyword: 'PatientID' or its tag '00100020' (either case)."""
    if name in ATTRIBUTES:
        return name
    return BY_TAG.get(name.upper())


def element(keyword: str, value) -> dict:
    """One DICOM JSON element; an empty value has no "Value" (PS3.18 F.2.5)."""
    tag, vr, _ = ATTRIBUTES[keyword]
    if value in (None, "", []):
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    elif vr in ("IS", "US"):
        converted = []
        for v in values:
            try:
                converted.append(int(str(v).strip()))
            except ValueError:
                return {"vr": vr}
        values = converted
    return {"vr": vr, "Value": values}


def dataset(values: dict[str, object], keywords) -> dict:
    return {ATTRIBUTES[k][0]: element(k, values.get(k)) for k in keywords}
