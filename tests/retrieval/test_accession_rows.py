"""Case-list rows by AccessionNumber (with or without PatientID, StudyDate, Modality): the C-FIND asks for
the accession number and every answer must carry it; an accession number whose studies belong to more than
one patient is refused with each patient's count (never their identifiers) and nothing of it is fetched.
Query jobs against a real Orthanc; retrieval against a demo PACS that notes every retrieve."""
from pathlib import Path

import pydicom
import pytest

from apps.dicom.demo.synthetic import write_dataset
from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.caselist import parse_case_list
from apps.retrieval.models import FoundStudy
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders
from tests.retrieval.test_query_jobs import CountingPACS

pytestmark = pytest.mark.django_db(transaction=True)
SHARED, OWN = "ACC00001001", "ACC00001002"
# ACN00001: CT 2021-01-01 (ACC00001001), MR 2021-01-02 (ACC00001002); ACN00002: CT 01-03 and MR 01-04, both
# re-labelled ACC00001001 (an accession number reused for another patient)
CASES = "\n".join([
    "AccessionNumber,Server,PatientID,StudyDate,Modality",
    f"{OWN},Q,,,",                 # line 2: one study
    f"{SHARED},Q,,,",              # line 3: studies of two patients: refused
    f"{SHARED},Q,ACN00002,,",      # line 4: the PatientID tells them apart: ACN00002's two studies
    f"{OWN},Q,,2021-01-05,",       # line 5: not on that day: nothing
]) + "\n"


def shared_accession_dataset(folder: Path) -> dict:
    manifest = write_dataset(folder, patients=2, studies=2, instances=2, modalities=("CT", "MR"), id_prefix="ACN",
                             first_date="2021-01-01")
    for path in (folder / "ACN00002").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.AccessionNumber = SHARED
        ds.save_as(path)
    return {(s["PatientID"], s["Modality"]): s["StudyInstanceUID"] for s in manifest["studies"]}


def start(user, mode: str, text: str = CASES):
    (read,) = intake.read_case_lists([("acc.csv", text.encode())], user=user)
    assert read.runnable and not read.case_list.errors, read.case_list.errors
    (job,) = intake.start_jobs([read], user=user, mode=mode)
    return job


def test_accession_rows_parse_without_a_patient_or_a_date():
    parsed = parse_case_list(CASES + "ACC0000000000000000001,Q,,,\n,Q,,,\n", {"Q"})
    assert [(r.line, r.accession_number, r.patient_id, r.study_date) for r in parsed.rows] == [
        (2, OWN, "", ""), (3, SHARED, "", ""), (4, SHARED, "ACN00002", ""), (5, OWN, "", "20210105")]
    assert [(e.line, e.message.split(" (")[0]) for e in parsed.errors] == [
        (6, "AccessionNumber 'ACC0000000000000000001' is longer than 16 characters"), (7, "PatientID is empty")]
    assert "ACC*" in parse_case_list("AccessionNumber,Server\nACC*,Q\n", {"Q"}).errors[0].message


def test_a_query_job_refuses_an_accession_number_of_two_patients_with_their_counts(empty_orthanc, tmp_path, user):
    uids = shared_accession_dataset(tmp_path / "data")
    empty_orthanc.load(tmp_path / "data")
    peer = empty_orthanc.peer()
    DicomServer.objects.create(name="Q", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)
    job = runner.run_inline(start(user, "query"))
    found = {}
    for f in FoundStudy.objects.filter(item__job=job):
        found.setdefault(f.line, set()).add((f.study_instance_uid, f.accession_number))
    assert found == {2: {(uids["ACN00001", "MR"], OWN)},
                     4: {(uids["ACN00002", "CT"], SHARED), (uids["ACN00002", "MR"], SHARED)}}
    flags = {i.line: i.flag for i in job.items.all()}
    assert flags[3] == (f"AccessionNumber {SHARED} matches studies of 2 patients (2 and 1 studies); refused, "
                        "nothing fetched: add the row's PatientID")
    assert "ACN0000" not in flags[3]
    assert flags[5].startswith("no study on Q") and not flags[2] and not flags[4]


def test_a_retrieval_row_of_a_shared_accession_number_fails_before_any_move(tmp_path, user, settings):
    own_data_folders(settings, tmp_path)
    uids = shared_accession_dataset(tmp_path / "pacs")
    text = "AccessionNumber,Server\n" f"{SHARED},Q\n" f"{OWN},Q\n"
    with CountingPACS(tmp_path / "pacs", ae_title="COUNTING") as pacs:
        DicomServer.objects.create(name="Q", ae_title="COUNTING", host="127.0.0.1", port=pacs.port, retries=0,
                                   retrieve_method="c-get")
        job = runner.run_inline(start(user, "retrieve", text))
        assert pacs.retrieves == [uids["ACN00001", "MR"]], "only the accession number of one patient was fetched"
    items = {i.line: i for i in job.items.all()}
    assert items[2].status == "failed" and "matches studies of 2 patients (2 and 1 studies)" in items[2].error
    assert items[3].status == "succeeded" and items[3].instances == 2
    assert {p.parent.name.split("_")[1] for p in settings.DOWNLOADS_DIR.rglob("*.dcm")} == {"ACN00001"}


def test_a_retrieval_row_matching_more_studies_than_its_max_studies_fails_before_any_move(tmp_path, user,
                                                                                          settings):
    own_data_folders(settings, tmp_path)
    uids = shared_accession_dataset(tmp_path / "pacs")
    text = ("PatientID,StudyDate,Server,MaxStudies\n"
            "ACN00001,2021-01-01..2021-01-31,Q,1\n"    # two studies, at most one wanted: refused
            "ACN00002,2021-01-01..2021-01-31,Q,2\n")   # two studies, two allowed: fetched
    with CountingPACS(tmp_path / "pacs", ae_title="COUNTING") as pacs:
        DicomServer.objects.create(name="Q", ae_title="COUNTING", host="127.0.0.1", port=pacs.port, retries=0,
                                   retrieve_method="c-get")
        job = runner.run_inline(start(user, "retrieve", text))
        assert sorted(pacs.retrieves) == sorted([uids["ACN00002", "CT"], uids["ACN00002", "MR"]])
    items = {i.line: i for i in job.items.all()}
    assert items[2].status == "failed"
    assert items[2].error == "2 studies found, more than MaxStudies 1; refused, nothing fetched"
    assert items[3].status == "succeeded" and items[3].instances == 4


def test_json_rows_may_name_an_accession_number_and_max_studies(api):
    DicomServer.objects.create(name="Q", ae_title="Q", host="127.0.0.1", port=104)
    response = api.post("/api/retrievals/", {"rows": [{"AccessionNumber": OWN, "Server": "Q", "MaxStudies": 2},
                                                      {"PatientID": "P1", "StudyDate": "2021-01-01", "Server": "Q"}],
                                             "mode": "query"}, format="json")
    assert response.status_code == 201, response.content
    assert [(i["AccessionNumber"], i["MaxStudies"], i["PatientID"]) for i in response.json()["items"]] == [
        (OWN, 2, ""), ("", None, "P1")]
