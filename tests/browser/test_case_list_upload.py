"""The admin case-list upload in a real Chromium: choose a CSV, read the preview (every bad row with its
line and reason), start the job, watch its live progress reach the end, and download the failed-downloads
CSV; a file that is not UTF-8 is refused on the preview with no way to start it."""
import csv
import io
from pathlib import Path

import pytest

from apps.jobs import runner
from apps.retrieval.models import RetrievalJob
from tests.browser.conftest import preview_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def iso_day(study_date: str) -> str:
    return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"


def case_list_text(studies) -> str:
    """Lines 2, 3, 5 are real studies on the session Orthanc (server A by C-MOVE, B by C-GET);
    line 4 has an impossible date and line 6 names a server the portal does not know."""
    s0, s1, s2 = studies[0], studies[1], studies[2]
    return "\n".join([
        "PatientID,StudyDate,Modality,Server",
        f"{s0['PatientID']},{iso_day(s0['StudyDate'])},{s0['Modality']},A",
        f"{s1['PatientID']},{iso_day(s1['StudyDate'])},{s1['Modality']},B",
        f"{s1['PatientID']},2021-02-30,CT,A",
        f"{s2['PatientID']},{iso_day(s2['StudyDate'])},{s2['Modality']},A",
        f"{s2['PatientID']},{iso_day(s2['StudyDate'])},{s2['Modality']},NOWHERE",
        "",
    ])


def run_items(items) -> None:
    """Run these items, one by one, in the test thread (nothing consumes the queue here)."""
    for item in items:
        runner.run_item(item._meta.label, item.pk, continue_with_job=False)


@pytest.mark.orthanc
def test_upload_preview_start_progress_and_report(admin_page, live_server, portal, orthanc_dataset,
                                                  orthanc_servers, tmp_path):
    page = admin_page
    case_file = tmp_path / "cases.csv"
    case_file.write_text(case_list_text(orthanc_dataset["studies"]), encoding="utf-8")

    page.get_by_role("link", name="Retrieval jobs").first.click()
    page.get_by_role("link", name="Upload case lists").click()
    page.set_input_files("#id_files", str(case_file))
    page.get_by_role("button", name="Preview").click()

    summary, bad, good_lines = preview_rows(page)
    assert summary == "3 rows will run, 2 bad rows will be skipped."
    assert set(bad) == {"4", "6"}
    assert "'2021-02-30' is not a real date" in bad["4"]
    assert "unknown server 'NOWHERE' (known: A, B)" in bad["6"]
    assert good_lines == ["2", "3", "5"]
    page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)  # for a human look (pytest tmp dir)

    page.get_by_role("button", name="Start retrieval").click()
    page.wait_for_url("**/admin/retrieval/retrievaljob/")
    job = RetrievalJob.objects.get()
    assert page.locator(".messagelist .success").inner_text() == (
        f"Started {job}: 3 rows, 2 bad rows skipped.")
    page.locator("#result_list").get_by_role("link", name=str(job)).click()

    # The change page polls /api/jobs/.../progress every 2 s: counters move while it stays open.
    counters = page.locator(".job-counters")
    assert counters.inner_text().startswith("0/3 done · 3 pending · 0 instances")
    assert counters.inner_text().endswith("· 2 bad rows")
    items = list(job.items.order_by("line"))
    run_items(items[:2])
    page.wait_for_function("""document.querySelector('.job-counters').textContent
        .startsWith('2/3 done · 1 pending · 2 succeeded · 10 instances · 10 expected instances · ')""")
    with page.expect_event("load"):  # a finished job reloads the page to show final statuses
        run_items(items[2:])
    assert counters.inner_text().startswith("3/3 done · 3 succeeded · 15 instances · 15 expected instances · ")
    assert page.locator(".job-progress").get_attribute("data-status") == "partial"
    refused = page.locator("table.bad-rows tr.bad-row td:first-child").all_inner_texts()
    assert refused == ["4", "6"]
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="failed downloads (CSV)").click()
    download = download_info.value
    assert download.suggested_filename == f"failed_downloads_job{job.pk}.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    table = "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # the last line is a comment
    rows = list(csv.DictReader(io.StringIO(table)))
    outcomes = {int(r["line"]): (r["outcome"], r["reason"]) for r in rows}
    assert {line for line, (outcome, _) in outcomes.items() if outcome == "bad_rows"} == {4, 6}
    assert {line for line, (outcome, _) in outcomes.items() if outcome == "succeeded"} == {2, 3, 5}
    assert "not a real date" in outcomes[4][1] and "unknown server 'NOWHERE'" in outcomes[6][1]
    assert "# success rate 60.0% (3 of 5 rows)" in text


def test_a_file_that_is_not_utf8_is_refused_on_the_preview(admin_page, live_server):
    page = admin_page
    page.goto(f"{live_server.url}/admin/retrieval/retrievaljob/upload/")
    latin1 = "PatientID,StudyDate,Modality,Server\nMÜLLER01,2021-03-01,CT,A\n".encode("latin-1")
    page.set_input_files("#id_files", files=[{"name": "export.csv", "mimeType": "text/csv", "buffer": latin1}])
    page.get_by_role("button", name="Preview").click()

    problem = page.locator(".errornote")
    assert "not UTF-8 text" in problem.inner_text() and "save it as 'CSV UTF-8'" in problem.inner_text()
    assert page.get_by_role("heading", name="export.csv").is_visible()
    assert page.get_by_role("button", name="Start retrieval").count() == 0
    assert page.get_by_role("link", name="Back").is_visible()
