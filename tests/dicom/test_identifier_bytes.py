"""apps.dicom.query.identifier_bytes: the C-FIND identifier a case-list row sends, written without pydicom
for plain text, must be byte for byte what pydicom (pynetdicom's encode) writes, in both VR encodings; any
other query goes through pydicom itself."""
import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode

from apps.dicom import query as query_module
from apps.dicom.query import STUDY_KEYS, identifier, identifier_bytes, study_query

QUERIES = [
    study_query({"PatientID": "NOMATCH000123", "StudyDate": "2024-01-02", "Modality": "CT"}),
    study_query({"PatientID": "P1", "StudyDate": "2024-01-01..2024-03-31"}),  # odd and even lengths
    study_query({"PatientID": "P12", "StudyDate": "2024-01-01..", "Modality": "MR"}),
    study_query({"StudyInstanceUID": "1.2.840.113619.2.55.3"}),  # an odd UID: padded with a NUL
    study_query({"StudyInstanceUID": "1.2.840.113619.2.55.34"}),
    study_query({"AccessionNumber": "ACC 17", "PatientID": "  spaced  "}),
    {**{key: "" for key in STUDY_KEYS}, "PatientName": "Doe^John^^Dr.=Ideo^Graphic", "ModalitiesInStudy": "CT\\MR"},
    {"PatientID": "A\\B\\C", "StudyDescription": "odd one", "StudyTime": "101010.5", "PatientBirthDate": ""},
    {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "", "Modality": "", "SeriesDescription": "~thorax",
     "NumberOfSeriesRelatedInstances": ""},
    {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4", "SOPInstanceUID": "", "InstanceNumber": ""},
    {"PatientID": None, "StudyComments": "a long text " * 30, "QueryRetrieveLevel": "PATIENT"},
    {"PatientID": "P1", "RetrieveURL": "http://example.invalid/wado", "StudyInstanceUID": ""},  # UR: a long VR
    {},
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("level", ["STUDY", "series", "IMAGE", "PATIENT"])
@pytest.mark.parametrize("implicit_vr", [True, False])
def test_plain_text_queries_are_written_as_pydicom_writes_them(query, level, implicit_vr):
    fast = query_module._plain_identifier(level.upper(), query, implicit_vr)
    assert fast is not None, "a plain-text query takes the direct way"
    assert fast == encode(identifier(level, query), implicit_vr, True)
    assert identifier_bytes(level, query, implicit_vr=implicit_vr) == fast
    back = decode(__import__("io").BytesIO(fast), implicit_vr, True)
    assert back.QueryRetrieveLevel == level.upper()


@pytest.mark.parametrize("query", [
    {"PatientID": "Müller"},  # not ASCII: pydicom's character sets
    {"PatientID": "P1\x07"},  # a control character
    {"NumberOfStudyRelatedInstances": "5"},  # a number VR with a value: pydicom makes it a number first
    {"NumberOfStudyRelatedInstances": 5},  # not text
    {"PatientID": "P1", "SpecificCharacterSet": "ISO_IR 192", "PatientName": "Ω^A"},
])
@pytest.mark.parametrize("implicit_vr", [True, False])
def test_anything_else_goes_through_pydicom(query, implicit_vr):
    assert query_module._plain_identifier("STUDY", query, implicit_vr) is None
    assert identifier_bytes("STUDY", query, implicit_vr=implicit_vr) == encode(identifier("STUDY", query),
                                                                                implicit_vr, True)


def test_a_dataset_query_big_endian_and_bad_input_go_through_identifier():
    ds = Dataset()
    ds.PatientID, ds.StudyInstanceUID = "P1", ""
    assert identifier_bytes("STUDY", ds, implicit_vr=False) == encode(identifier("STUDY", ds), False, True)
    assert identifier_bytes("STUDY", {"PatientID": "P1"}, implicit_vr=False, little_endian=False) == encode(
        identifier("STUDY", {"PatientID": "P1"}), False, False)
    with pytest.raises(ValueError, match="not a DICOM attribute keyword"):
        identifier_bytes("STUDY", {"PatientIdent": "P1"}, implicit_vr=True)
    with pytest.raises(ValueError, match="query level"):
        identifier_bytes("FRAME", {"PatientID": "P1"}, implicit_vr=True)
