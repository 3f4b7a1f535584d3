"""Query jobs ("look before you fetch"): every row runs its C-FIND and records each study it found; rows
that found nothing or more than their MaxStudies are flagged; nothing is moved. Against a real Orthanc
(results exact against what it holds) and a demo PACS that counts every C-MOVE and C-GET asked of it."""
import csv
import io
from pathlib import Path

import pytest
from django.core.management import call_command
from pydicom.dataset import Dataset

from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.models import FoundStudy, RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders

pytestmark = pytest.mark.django_db(transaction=True)

# patient QRY00001: CT 2022-05-01, MR 2022-05-02, US 2022-05-03; QRY00002: CT 05-04, MR 05-05, US 05-06
DATASET = dict(patients=2, studies=3, instances=2, modalities=("CT", "MR", "US"), id_prefix="QRY",
               first_date="2022-05-01")
CASE_LIST = "\n".join([
    "PatientID,StudyDate,Modality,Server,StudyInstanceUID,MaxStudies",
    "QRY00001,2022-05-01..2022-05-31,,Q,,",        # line 2: all three of the patient's studies
    "QRY00001,2022-04-01..2022-05-31,,Q,,2",       # line 3: three found, more than MaxStudies 2: flagged
    "NOBODY,2022-05-01,,Q,,",                      # line 4: nothing found: flagged
    "QRY00002,2022-05-05,MR,Q,,",                  # line 5: one study
]) + "\n"


def start_query_job(user, text=CASE_LIST) -> RetrievalJob:
    (read,) = intake.read_case_lists([("cases.csv", text.encode())], user=user)
    assert read.runnable and not read.case_list.errors, read.case_list.errors
    (job,) = intake.start_jobs([read], user=user, mode="query")
    return job


def found_by_line(job) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for found in FoundStudy.objects.filter(item__job=job):
        out.setdefault(found.line, set()).add(found.study_instance_uid)
    return out


def test_a_query_job_records_exactly_what_orthanc_holds_and_flags_nothing_and_too_much(
        empty_orthanc, tmp_path, user, settings):
    manifest = write_dataset(tmp_path / "data", **DATASET)
    empty_orthanc.load(tmp_path / "data")
    settings.DOWNLOADS_DIR, settings.STAGING_DIR = tmp_path / "downloads", tmp_path / "staging"
    peer = empty_orthanc.peer()
    DicomServer.objects.create(name="Q", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)

    job = runner.run_inline(start_query_job(user))

    by_patient = {}
    for study in manifest["studies"]:
        by_patient.setdefault(study["PatientID"], []).append(study)
    first, second = by_patient["QRY00001"], by_patient["QRY00002"]
    assert found_by_line(job) == {2: {s["StudyInstanceUID"] for s in first},
                                  3: {s["StudyInstanceUID"] for s in first},
                                  5: {second[1]["StudyInstanceUID"]}}
    orthanc_studies = {s["MainDicomTags"]["StudyInstanceUID"]: s["MainDicomTags"]
                       for s in empty_orthanc.find("Study", {})}
    for found in FoundStudy.objects.filter(item__job=job):
        held = next(s for s in manifest["studies"] if s["StudyInstanceUID"] == found.study_instance_uid)
        tags = orthanc_studies[found.study_instance_uid]
        assert (found.server_name, found.study_date, found.modalities, found.accession_number, found.series,
                found.instances) == ("Q", held["StudyDate"], held["Modality"], held["AccessionNumber"], 1, 2)
        assert (found.study_time, found.description) == (tags["StudyTime"], tags["StudyDescription"])
    items = {i.line: i for i in job.items.all()}
    assert {line: i.status for line, i in items.items()} == dict.fromkeys((2, 3, 4, 5), "succeeded")
    assert items[2].flag == "" and items[5].flag == ""
    assert items[3].flag == "3 studies found, more than MaxStudies 2"
    assert items[4].flag == "no study on Q matches line 4"
    assert (items[2].expected, items[5].expected, items[2].instances) == (6, 2, 0)
    assert job.status == "partial", "flagged rows make the job partial: somebody should look at them"
    assert not settings.DOWNLOADS_DIR.exists() or not any(settings.DOWNLOADS_DIR.rglob("*.dcm"))


class CountingPACS(DemoPACS):
    """The demo PACS, noting every retrieve (C-MOVE or C-GET) it is asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.retrieves: list[str] = []

    def _select(self, identifier: Dataset, sop_class: str, *, need_unique_key: bool):
        if need_unique_key:
            self.retrieves.append(str(identifier.get("StudyInstanceUID", "")))
        return super()._select(identifier, sop_class, need_unique_key=need_unique_key)


@pytest.mark.parametrize("method", ["c-move", "c-get"])
def test_a_query_job_never_asks_the_pacs_to_move_anything(tmp_path, user, method, settings):
    own_data_folders(settings, tmp_path)
    manifest = write_dataset(tmp_path / "pacs", **DATASET)
    with CountingPACS(tmp_path / "pacs", ae_title="COUNTING") as pacs:
        DicomServer.objects.create(name="Q", ae_title="COUNTING", host="127.0.0.1", port=pacs.port, retries=0,
                                   retrieve_method=method)
        job = runner.run_inline(start_query_job(user))
        assert pacs.retrieves == []
    assert len(found_by_line(job)[2]) == 3 and found_by_line(job)[5] == {
        s["StudyInstanceUID"] for s in manifest["studies"] if (s["PatientID"], s["Modality"]) == ("QRY00002", "MR")}
    assert job.items.get(line=4).flag and job.items.get(line=3).flag


def test_the_cli_runs_a_query_only_batch_and_writes_the_results(tmp_path, user, settings):
    settings.DATA_DIR = tmp_path / "data"
    write_dataset(tmp_path / "pacs", **DATASET)
    (tmp_path / "cases.csv").write_text(CASE_LIST)
    with CountingPACS(tmp_path / "pacs", ae_title="COUNTING") as pacs:
        DicomServer.objects.create(name="Q", ae_title="COUNTING", host="127.0.0.1", port=pacs.port, retries=0)
        out = io.StringIO()
        call_command("dicom", "batch", str(tmp_path / "cases.csv"), "--query-only", stdout=out, stderr=io.StringIO())
        assert pacs.retrieves == []
    job = RetrievalJob.objects.get()
    assert job.mode == "query"
    text = out.getvalue()
    assert "cases.csv: 7 studies found by 4 rows, 2 rows flagged, 0 failed, 0 bad rows." in text
    path = Path(text.rsplit("Results: ", 1)[1].strip())
    lines = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [int(row["line"]) for row in lines] == [2, 2, 2, 3, 3, 3, 5]
    assert {row["StudyInstanceUID"] for row in lines} == {f.study_instance_uid for f in FoundStudy.objects.all()}


def test_max_studies_must_be_a_whole_number(db):
    from apps.retrieval.caselist import parse_case_list

    parsed = parse_case_list("PatientID,StudyDate,Modality,Server,MaxStudies\nP1,2022-05-01,,Q,x\n"
                             "P2,2022-05-01,,Q,0\nP3,2022-05-01,,Q,4\nP4,2022-05-01,,Q,\n", {"Q"})
    assert [(e.line, e.message) for e in parsed.errors] == [
        (2, "MaxStudies 'x' is not a whole number of studies (1 or more)"),
        (3, "MaxStudies '0' is not a whole number of studies (1 or more)")]
    assert [(r.patient_id, r.max_studies) for r in parsed.rows] == [("P3", 4), ("P4", None)]
