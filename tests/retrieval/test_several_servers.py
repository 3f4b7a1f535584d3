"""A row searched on several servers ('*' or 'A|B') against two real Orthancs: the session one (A) and the spare
(S), which holds a copy of one of A's studies and a study of the same patient A lacks. Each study is fetched
once, from the first server in the row's order that has it (C-MOVEs to our receiver from both), the result
says where each was found, and a query job records each study once with every server it was found on."""
import shutil
from pathlib import Path

import pydicom
import pytest

from apps.retrieval import intake
from apps.retrieval.caselist import parse_case_list
from apps.retrieval.models import FoundStudy, MoveKey, RetrievalJob
from apps.retrieval.results import results_rows
from apps.servers.models import DicomServer
from tests.retrieval.test_integrity import run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_pacs(empty_orthanc, orthanc, orthanc_dataset, tmp_path, portal, settings):
    """A (the session Orthanc) and S (the spare): S holds A's first study of ORT00001 and a third study of
    that patient (2021-03-03) that A does not have. Both move to our in-process receiver."""
    from apps.dicom.demo.synthetic import write_dataset

    settings.QUARANTINE_DIR = tmp_path / "quarantine"
    shared = next(s for s in orthanc_dataset["studies"] if s["PatientID"] == "ORT00001" and s["StudyDate"] == "20210301")
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in Path(orthanc.dataset_dir).rglob("*.dcm"):
        if pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID == shared["StudyInstanceUID"]:
            shutil.copy(path, copy / path.name)
    only_s = write_dataset(tmp_path / "only-s", patients=1, studies=1, series=1, instances=3, seed=99,
                           modalities=("CT",), id_prefix="ORT", first_date="2021-03-03")["studies"][0]
    empty_orthanc.load(copy)
    empty_orthanc.load(tmp_path / "only-s")
    empty_orthanc.add_modality("PORTALTEST", settings.DICOM_AE_TITLE, settings.DICOM_PORT)
    servers = {}
    for name, pacs in (("A", orthanc), ("S", empty_orthanc)):
        peer = pacs.peer()
        servers[name] = DicomServer.objects.create(name=name, ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                                   retries=0)
    other = next(s for s in orthanc_dataset["studies"] if s["PatientID"] == "ORT00001" and s["StudyDate"] == "20210302")
    return {"shared": shared["StudyInstanceUID"], "only_a": other["StudyInstanceUID"],
            "only_s": only_s["StudyInstanceUID"], "A": orthanc, "S": empty_orthanc, "servers": servers}


ROW = "PatientID,StudyDate,Modality,Server\nORT00001,2021-03-01..2021-03-03,,{}\n"


def job_of(server_cell: str, *, user=None, mode: str = "retrieve") -> RetrievalJob:
    (read,) = intake.read_case_lists([("many.csv", ROW.format(server_cell))], user=user)
    assert read.runnable and not read.case_list.errors, read.case_list.errors
    return RetrievalJob.from_case_list(read.case_list, source_name="many.csv", start=False, mode=mode)


def filed_under(settings, server: str) -> set[str]:
    return {p.stem for p in (Path(settings.DOWNLOADS_DIR) / server).rglob("*.dcm")}


def test_every_server_star_fetches_a_study_held_twice_once_from_the_first(two_pacs, settings):
    job = job_of("*")
    item = job.items.get()
    assert (item.server_name, item.server_list) == ("*", ["A", "S"]), "'*': every server, by name"
    item = run(job).items.get()
    assert item.status == "succeeded", item.error
    a, s = two_pacs["A"], two_pacs["S"]
    assert filed_under(settings, "A") == a.study_instances(two_pacs["shared"]) | a.study_instances(two_pacs["only_a"])
    assert filed_under(settings, "S") == s.study_instances(two_pacs["only_s"]), "the shared study came from A only"
    assert item.instances == item.expected == 5 + 5 + 3
    assert item.result["found_on"] == {two_pacs["shared"]: ["A", "S"], two_pacs["only_a"]: ["A"],
                                       two_pacs["only_s"]: ["S"]}
    assert {s["StudyInstanceUID"]: s["Server"] for s in item.result["studies"]} == {
        two_pacs["shared"]: "A", two_pacs["only_a"]: "A", two_pacs["only_s"]: "S"}
    assert not MoveKey.objects.exists()


def test_a_list_is_searched_in_its_order(two_pacs, settings):
    item = run(job_of("S|A")).items.get()
    assert item.status == "succeeded", item.error
    s, a = two_pacs["S"], two_pacs["A"]
    assert filed_under(settings, "S") == s.study_instances(two_pacs["shared"]) | s.study_instances(two_pacs["only_s"])
    assert filed_under(settings, "A") == a.study_instances(two_pacs["only_a"])
    assert item.result["found_on"][two_pacs["shared"]] == ["S", "A"]


def test_a_query_job_records_each_study_once_with_where_it_was_found(two_pacs):
    job = run(job_of("*", mode="query"))
    rows = {r["StudyInstanceUID"]: (r["Server"], r["FoundOn"]) for r in results_rows(job)}
    assert rows == {two_pacs["shared"]: ("A", "A|S"), two_pacs["only_a"]: ("A", "A"),
                    two_pacs["only_s"]: ("S", "S")}
    assert FoundStudy.objects.count() == 3 and job.items.get().flag == ""


@pytest.mark.parametrize("cell, message", [
    ("A|NOPE", "unknown server 'NOPE' (known: A, S)"),
    ("A||S", "Server 'A||S' has an empty name"),
    ("A|*", "'*' stands alone"),
])
def test_bad_names_in_a_list_are_the_row_errors_of_today(cell, message):
    parsed = parse_case_list(ROW.format(cell), {"A", "S"})
    assert not parsed.rows and message in parsed.errors[0].message


def test_a_name_listed_twice_is_searched_once_and_names_match_without_case():
    (row,) = parse_case_list(ROW.format("a|S|A"), {"A", "S"}).rows
    assert (row.server, row.servers, row.server_spec) == ("A", ("A", "S"), "A|S")
