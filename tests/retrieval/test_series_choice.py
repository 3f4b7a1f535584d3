"""Series chosen within a row's studies (SeriesDescription, SeriesModality, SeriesInstanceUID): exact text, or
'~text' (contains, case-insensitive, plain text), against a real Orthanc holding one study of three series.
Only the chosen series are moved (SERIES-level C-GET), the row expects their instances only, a row choosing
nothing fails with the reason, and a query job shows how many series and instances each study's row chose."""
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from apps.retrieval import intake
from apps.retrieval.caselist import parse_case_list
from apps.retrieval.models import FoundStudy, RetrievalJob
from apps.retrieval.results import results_rows
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders
from tests.retrieval.test_integrity import run

pytestmark = pytest.mark.django_db(transaction=True)
DESCRIPTIONS = ("Axial T1", "AXIAL T2 FLAIR", "Sag ax.al scout")  # the third: '~ax.al' as a regex would match all


@pytest.fixture
def three_series(empty_orthanc, tmp_path):
    """One study of three series (4 instances each) with the DESCRIPTIONS, the third of modality OT."""
    from apps.dicom.demo.synthetic import write_dataset

    manifest = write_dataset(tmp_path / "dataset", patients=1, studies=1, series=3, instances=4, seed=5,
                             modalities=("MR",), id_prefix="SCH")
    by_series: dict[str, set[str]] = {}
    paths = sorted((tmp_path / "dataset").rglob("*.dcm"))
    order = []
    for path in paths:
        ds = pydicom.dcmread(path)
        if ds.SeriesInstanceUID not in order:
            order.append(str(ds.SeriesInstanceUID))
    for path in paths:
        ds = pydicom.dcmread(path)
        index = order.index(str(ds.SeriesInstanceUID))
        ds.SeriesDescription = DESCRIPTIONS[index]
        if index == 2:
            ds.Modality = "OT"
        ds.save_as(path)
        by_series.setdefault(DESCRIPTIONS[index], set()).add(str(ds.SOPInstanceUID))
    empty_orthanc.load(tmp_path / "dataset")
    return SimpleNamespace(uid=manifest["studies"][0]["StudyInstanceUID"], by_series=by_series, order=order,
                           pacs=empty_orthanc)


@pytest.fixture
def spare(db, three_series, settings, tmp_path):
    own_data_folders(settings, tmp_path)
    peer = three_series.pacs.peer()
    return DicomServer.objects.create(name="SP", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0,
                                      retrieve_method="c-get")


def job_of(text: str, mode: str = "retrieve") -> RetrievalJob:
    (read,) = intake.read_case_lists([("series.csv", text)], user=None)
    assert read.runnable and not read.case_list.errors, read.case_list.errors
    return RetrievalJob.from_case_list(read.case_list, source_name="series.csv", start=False, mode=mode)


def filed(settings) -> set[str]:
    return {p.stem for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm")}


@pytest.mark.parametrize("column, value, chosen", [
    ("SeriesDescription", "Axial T1", ["Axial T1"]),  # exact: not "AXIAL T2 FLAIR"
    ("SeriesDescription", "~axial", ["Axial T1", "AXIAL T2 FLAIR"]),  # contains, without regard to case
    ("SeriesDescription", "~ax.al", ["Sag ax.al scout"]),  # plain text: '.' is a dot, not "any character"
    ("SeriesModality", "OT", ["Sag ax.al scout"]),
    ("SeriesModality", "~m", ["Axial T1", "AXIAL T2 FLAIR"]),
])
def test_only_the_chosen_series_are_moved_and_expected(spare, three_series, settings, column, value, chosen):
    item = run(job_of(f"StudyInstanceUID,Server,{column}\n{three_series.uid},SP,{value}\n")).items.get()
    wanted = set().union(*(three_series.by_series[d] for d in chosen))
    assert item.status == "succeeded", item.error
    assert filed(settings) == wanted
    assert item.expected == item.instances == len(wanted) == 4 * len(chosen)
    assert sorted(s["SeriesInstanceUID"] for s in item.result["studies"]) == sorted(
        three_series.order[DESCRIPTIONS.index(d)] for d in chosen)


def test_a_series_instance_uid_with_a_description_must_match_both(spare, three_series, settings):
    second = three_series.order[1]
    ok = run(job_of(f"StudyInstanceUID,Server,SeriesInstanceUID,SeriesDescription\n"
                    f"{three_series.uid},SP,{second},~flair\n")).items.get()
    assert ok.status == "succeeded" and filed(settings) == three_series.by_series["AXIAL T2 FLAIR"]


def test_a_row_whose_series_choice_matches_nothing_fails_with_the_reason_and_moves_nothing(spare, three_series,
                                                                                           settings):
    item = run(job_of(f"StudyInstanceUID,Server,SeriesDescription\n{three_series.uid},SP,~coronal\n")).items.get()
    assert item.status == "failed"
    assert "None of the series of the 1 study found on SP for line 2 matches SeriesDescription '~coronal'" in item.error
    assert "nothing was fetched" in item.error and filed(settings) == set()


def test_a_query_job_shows_the_chosen_series_and_flags_a_row_choosing_nothing(spare, three_series):
    job = run(job_of(f"StudyInstanceUID,Server,SeriesDescription\n{three_series.uid},SP,~axial\n"
                     f"{three_series.uid},SP,~coronal\n", mode="query"))
    first, second = job.items.order_by("line")
    assert (first.flag, first.expected) == ("", 8)
    rows = results_rows(job)
    assert [(r["line"], r["StudyInstanceUID"], r["NumberOfStudyRelatedSeries"], r["ChosenSeries"],
             r["ChosenInstances"]) for r in rows] == [(2, three_series.uid, 3, 2, 8)]
    assert "matches SeriesDescription '~coronal'" in second.flag and not FoundStudy.objects.filter(item=second)


def test_retrieve_these_keeps_the_rows_series_choice(spare, three_series, settings):
    from apps.retrieval.followup import retrieve_found

    query = run(job_of(f"StudyInstanceUID,Server,SeriesModality\n{three_series.uid},SP,OT\n", mode="query"))
    started = retrieve_found(query, user=None)
    item = run(started).items.get()
    assert item.series_modality == "OT" and item.status == "succeeded", item.error
    assert filed(settings) == three_series.by_series["Sag ax.al scout"]


@pytest.mark.parametrize("cells, message", [
    ("~", "SeriesDescription '~' needs text after the '~'"),
    ("ax*", "SeriesDescription 'ax*' contains '*'"),
    ("~ax?al", "contains '?'"),
    ("~" + "x" * 65, "is longer than 64 characters"),
])
def test_series_values_that_are_no_plain_text_are_bad_rows(cells, message):
    parsed = parse_case_list(f"StudyInstanceUID,Server,SeriesDescription\n1.2.3,SP,{cells}\n", {"SP"})
    assert not parsed.rows and message in parsed.errors[0].message


def test_series_columns_reach_the_row_from_csv_and_json():
    parsed = parse_case_list("PatientID,StudyDate,Server,SeriesDescription,SeriesModality,SeriesInstanceUID\n"
                             "P1,2024-01-02,SP,~axial,MR,1.2.3.4\n", {"SP"})
    (row,) = parsed.rows
    assert (row.series_description, row.series_modality, row.series_instance_uid) == ("~axial", "MR", "1.2.3.4")
    text = intake.rows_to_csv([{"PatientID": "P1", "StudyDate": "2024-01-02", "Server": "SP",
                                "SeriesDescription": "~axial"}])
    assert parse_case_list(text, {"SP"}).rows[0].series_description == "~axial"


@pytest.mark.parametrize("wanted, value, matches", [
    ("~a+", "T1 a+b", True), ("~a+", "aaa", False),  # '+' is a plus sign
    ("~[ax]", "[AX] scout", True), ("~[ax]", "axial", False),  # brackets are brackets
    ("~(a+)+$", "a" * 5000 + "!", False),  # a catastrophic regex is just text: answered at once
    ("~ AXIAL ", "thin axial", True), ("Axial", "axial", False), ("Axial", " Axial ", True),
])
def test_a_tilde_value_is_plain_text_contained_without_regard_to_case(wanted, value, matches):
    from apps.retrieval.series import text_matches

    assert text_matches(wanted, value) is matches
