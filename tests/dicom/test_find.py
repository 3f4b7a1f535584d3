"""C-FIND against the real Orthanc holding the generated dataset (tests/conftest.py ORTHANC_DATASET:
3 patients x 2 studies, modalities CT, MR, US in turn, dated 2021-03-01 + n days)."""

import pytest
from pydicom.dataset import Dataset

from apps.dicom import dimse
from apps.dicom.peers import LocalAE

LOCAL = LocalAE(ae_title="FINDTEST", port=0)
STUDY_KEYS = {"PatientID": "", "StudyInstanceUID": "", "StudyDate": "", "ModalitiesInStudy": "",
              "NumberOfStudyRelatedInstances": ""}


def uids(matches):
    return {m.StudyInstanceUID for m in matches}


def test_find_by_patient_id_returns_exactly_that_patients_studies(orthanc, orthanc_dataset):
    patient = orthanc_dataset["studies"][2]["PatientID"]
    expected = {s["StudyInstanceUID"] for s in orthanc_dataset["studies"] if s["PatientID"] == patient}
    matches = dimse.find(orthanc.peer(), LOCAL, "STUDY", {**STUDY_KEYS, "PatientID": patient})
    assert len(expected) == 2 and uids(matches) == expected
    assert all(m.PatientID == patient and int(m.NumberOfStudyRelatedInstances) == 5 for m in matches)


def test_find_by_date_range(orthanc, orthanc_dataset):
    expected = {s["StudyInstanceUID"] for s in orthanc_dataset["studies"] if "20210302" <= s["StudyDate"] <= "20210304"}
    matches = dimse.find(orthanc.peer(), LOCAL, "STUDY", {**STUDY_KEYS, "StudyDate": "20210302-20210304"})
    assert len(expected) == 3 and uids(matches) == expected


def test_find_by_modality_in_study(orthanc, orthanc_dataset):
    expected = {s["StudyInstanceUID"] for s in orthanc_dataset["studies"] if s["Modality"] == "US"}
    matches = dimse.find(orthanc.peer(), LOCAL, "STUDY", {**STUDY_KEYS, "ModalitiesInStudy": "US"})
    assert len(expected) == 2 and uids(matches) == expected


def test_patient_series_and_image_levels_count_right(orthanc, orthanc_dataset):
    study = orthanc_dataset["studies"][0]
    with dimse.associate(orthanc.peer(), LOCAL, purpose="query") as assoc:
        patients = assoc.find("PATIENT", {"PatientID": "", "PatientName": ""}, model="patient")
        series = assoc.find("SERIES", {"StudyInstanceUID": study["StudyInstanceUID"], "SeriesInstanceUID": "",
                                       "Modality": ""})
        images = assoc.find("IMAGE", {"StudyInstanceUID": study["StudyInstanceUID"],
                                      "SeriesInstanceUID": study["Series"][0]["SeriesInstanceUID"],
                                      "SOPInstanceUID": ""})
    assert {p.PatientID for p in patients} == {s["PatientID"] for s in orthanc_dataset["studies"]}
    assert [s.SeriesInstanceUID for s in series] == [study["Series"][0]["SeriesInstanceUID"]]
    assert series[0].Modality == study["Modality"]
    assert {i.SOPInstanceUID for i in images} == orthanc.study_instances(study["StudyInstanceUID"])
    assert len(images) == 5


def test_a_dataset_query_and_no_match(orthanc):
    query = Dataset()
    query.PatientID = "NO-SUCH-PATIENT"
    query.StudyInstanceUID = ""
    assert dimse.find(orthanc.peer(), LOCAL, "STUDY", query) == []
    assert "QueryRetrieveLevel" not in query, "the caller's dataset is left alone"


def test_bad_queries_are_refused_before_anything_is_sent(orthanc):
    with pytest.raises(ValueError, match="NotAKeyword"):
        dimse.find(orthanc.peer(), LOCAL, "STUDY", {"NotAKeyword": ""})
    with pytest.raises(ValueError, match="level"):
        dimse.find(orthanc.peer(), LOCAL, "VOLUME", {"PatientID": ""})


def test_a_find_with_a_limit_keeps_one_more_and_cancels_the_rest(endless_pacs):
    peer, seen = endless_pacs
    matches = dimse.find(peer, LOCAL, "STUDY", {"StudyInstanceUID": ""}, limit=3)
    assert [m.StudyInstanceUID for m in matches] == ["1.2.3.0", "1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert seen["cancelled"] and seen["sent"] < 50  # the PACS stopped long before its thousand
