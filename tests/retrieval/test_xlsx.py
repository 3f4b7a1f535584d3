"""Excel case lists (.xlsx): the first sheet, header as in the CSV, dates as Excel dates or text, IDs typed
as text keep their leading zeros, formulas refused (never evaluated), through every door the CSV has: the
API, the admin's preview and confirm, and `dicom batch` (a file or a folder)."""
import base64
import datetime as dt
import io
import re

import pytest
from django.core.management import call_command

from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.retrieval.spreadsheet import workbook_to_csv
from apps.servers.models import DicomServer
from tests.fixtures_common import unused_port
from tests.retrieval.xlsx import as_openpyxl_writes, excel_like, sheet_part, workbook

pytestmark = pytest.mark.django_db

HEADER = ["PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID", "MaxStudies"]
ROWS = [HEADER,
        ["00042", dt.datetime(2025, 1, 2), "CT", "LK"],
        [8318169, "2025-01-03", "mr", "LK", None, 3],
        [],
        ["P7", dt.date(2025, 1, 4), None, "LK", "1.2.840.1"],
        ["P8", "2025-02-30", "CT", "LK"]]


@pytest.fixture(autouse=True)
def server(db):
    return DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)


def upload(name, data):
    f = io.BytesIO(data)
    f.name = name
    return f


def read(data, user=None):
    (case_file,) = intake.read_case_lists([("cases.xlsx", data)], user=user)
    return case_file


def test_a_workbook_reads_as_its_csv_would_with_excel_row_numbers():
    case_file = read(workbook(ROWS))
    assert case_file.runnable, case_file.problem
    assert [(r.line, r.patient_id, r.study_date, r.modality, r.server, r.study_instance_uid, r.max_studies)
            for r in case_file.case_list.rows] == [
        (2, "00042", "20250102", "CT", "LK", "", None),
        (3, "8318169", "20250103", "MR", "LK", "", 3),
        (5, "P7", "20250104", "", "LK", "1.2.840.1", None)]
    assert [(e.line, e.message) for e in case_file.case_list.errors] == [
        (6, "StudyDate '2025-02-30' is not a real date in YYYY-MM-DD form")]
    assert case_file.content.decode().startswith("PatientID,StudyDate,Modality,Server,StudyInstanceUID,MaxStudies\n")


def test_only_the_first_sheet_counts():
    case_file = read(workbook([HEADER[:4], ["P1", "2025-01-01", "CT", "LK"]],
                              sheets=[("other", [HEADER[:4], ["P2", "2025-01-01", "CT", "LK"]])]))
    assert [r.patient_id for r in case_file.case_list.rows] == ["P1"]


@pytest.mark.parametrize("rows,words", [
    ([], "the first sheet is empty"),
    ([[None, None], []], "the first sheet is empty"),
    ([HEADER[:4], ["P1", "=TODAY()", "CT", "LK"]], "cell B2 holds a formula (=TODAY())"),
    ([HEADER[:4], ["=A1", "2025-01-01", "CT", "LK"]], "cell A2 holds a formula"),
])
def test_empty_sheets_and_formulas_are_refused_by_name(rows, words):
    case_file = read(workbook(rows))
    assert not case_file.runnable and words in case_file.problem


def test_the_api_takes_a_workbook_in_the_file_field(api):
    response = api.post("/api/retrievals/", {"file": upload("cases.xlsx", workbook(ROWS)), "mode": "query"},
                        format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert [(i["line"], i["PatientID"]) for i in body["items"]] == [(2, "00042"), (3, "8318169"), (5, "P7")]
    assert body["row_errors"][0]["line"] == 6
    refused = api.post("/api/retrievals/", {"file": upload("f.xlsx", workbook([["P1", "=1+1", "CT", "LK"]]))},
                       format="multipart")
    assert refused.status_code == 400 and "f.xlsx: cell B1 holds a formula" in refused.json()["error"]


def test_the_admin_previews_and_starts_a_workbook(admin_client_logged_in):
    client = admin_client_logged_in
    preview = client.post("/admin/retrieval/retrievaljob/upload/", {"files": [upload("cases.xlsx", workbook(ROWS))]})
    page = preview.content.decode()
    assert "3 rows will run" in " ".join(re.sub(r"<[^>]+>", " ", page).split())
    content = re.search(r'name="content" value="([^"]+)"', page).group(1)
    assert base64.b64decode(content).startswith(b"PatientID,")  # the very CSV that was previewed
    start = client.post("/admin/retrieval/retrievaljob/upload/", {
        "confirm": "1", "timeout": "", "default_server": "", "name": ["cases.xlsx"], "content": [content]})
    assert start.status_code == 302
    assert [i.patient_id for i in RetrievalJob.objects.get().items.order_by("line")] == ["00042", "8318169", "P7"]


def test_the_cli_takes_a_workbook_and_a_folder_of_them(tmp_path, settings, server):
    DicomServer.objects.filter(pk=server.pk).update(retries=0, port=unused_port())  # rows fail at once
    settings.DATA_DIR = tmp_path / "data"
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.xlsx").write_bytes(workbook([HEADER[:4], ["P1", "2025-01-01", "CT", "LK"]]))
    (tmp_path / "lists" / "b.csv").write_text("P2,2025-01-01,CT,LK\n")
    out = io.StringIO()
    call_command("dicom", "batch", str(tmp_path / "lists"), "--query-only", stdout=out, stderr=io.StringIO())
    assert sorted((job.source_name, [i.patient_id for i in job.items.all()]) for job in RetrievalJob.objects.all()) \
        == [("a.xlsx", ["P1"]), ("b.csv", ["P2"])]
    assert "a.xlsx: 0 studies found by 1 rows" in out.getvalue()


def test_the_cli_refuses_a_fifty_megabyte_list_by_its_size(tmp_path):
    big = tmp_path / "big.xlsx"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB as the file system says, never written
    err = io.StringIO()
    call_command("dicom", "batch", str(big), stdout=io.StringIO(), stderr=err)
    assert "big.xlsx: 52428800 bytes is over the" in err.getvalue()
    assert not RetrievalJob.objects.exists()


def test_a_fifty_megabyte_file_is_refused_before_it_is_read(api):
    class Huge:
        size = 50 * 1024 * 1024

        def read(self, *args):
            raise AssertionError("read whole")

    (case_file,) = intake.read_case_lists([("big.xlsx", Huge())], user=None)
    assert not case_file.runnable and "52428800 bytes is over the" in case_file.problem
    response = api.post("/api/retrievals/", {"file": upload("big.xlsx", b"PK\x03\x04" + b"\0" * (50 * 1024 * 1024))},
                        format="multipart")
    assert response.status_code == 400 and "byte limit" in response.json()["error"]


@pytest.mark.parametrize("build", [excel_like, as_openpyxl_writes], ids=["as Excel writes", "as openpyxl writes"])
def test_a_hundred_thousand_rows_parse_whole_and_in_order(build):
    """Every row of a 100,000-row sheet comes out, in order (how fast: bench/caselist.py's xlsx figure,
    not a limit here, where a loaded machine would make it fail at random)."""
    rows = [HEADER[:4]] + [[f"{n:08d}", dt.date(2024, 1, 1) + dt.timedelta(days=n % 365), "CT", "LK"]
                           for n in range(100_000)]
    if build is as_openpyxl_writes:  # its sheet is openpyxl's, byte for byte
        assert sheet_part(as_openpyxl_writes(rows[:500])) == sheet_part(workbook(rows[:500]))
    text = workbook_to_csv(build(rows))
    lines = text.splitlines()
    assert len(lines) == 100_001 and lines[1].startswith("00000000,2024-01-01")
    assert lines[-1].startswith("00099999,2024-12-") and lines[50_001].startswith("00050000,")
