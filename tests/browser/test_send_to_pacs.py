"""The admin's "Send to PACS" in a real Chromium: upload files (one of them not DICOM), pick the server,
send, watch the job page's live counters reach the end, and download the report naming the skipped file."""
from pathlib import Path

import pytest

from apps.jobs import runner
from apps.sending.models import SendJob
from tests.sending.conftest import pacs, root, study_tree  # noqa: F401  (fixtures shared with the sending tests)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_upload_pick_a_server_send_and_watch_it_finish(admin_page, pacs, root, empty_orthanc, tmp_path):  # noqa: F811
    page = admin_page
    study_tree(tmp_path / "src", patients=1, instances=2)
    (tmp_path / "src" / "notes.txt").write_text("not an image")
    chosen = sorted(str(p) for p in (tmp_path / "src").rglob("*") if p.is_file())

    page.get_by_role("link", name="Send jobs").first.click()
    page.locator("#send-to-pacs").click()
    page.get_by_label("PACS").check()
    page.set_input_files("#id_files", chosen)
    page.get_by_role("button", name="Send").click()
    page.wait_for_url("**/admin/sending/sendjob/*/change/")
    job = SendJob.objects.get()
    assert page.locator(".messagelist .success").inner_text() == f"Started {job}: 1 batches."

    counters = page.locator(".job-counters")
    assert counters.inner_text().startswith("0/1 done · 1 pending · 5 files · 0 sent")
    with page.expect_event("load"):  # a finished job reloads the page to show final statuses
        for item in job.items.all():
            runner.run_item(item._meta.label, item.pk)
    assert counters.inner_text().startswith("1/1 done · 1 succeeded · 5 files · 4 sent · 0 warnings · 1 skipped · 0 not stored · ")
    assert page.locator(".job-progress").get_attribute("data-status") == "succeeded"
    assert len(empty_orthanc.instances()) == 4

    with page.expect_download() as download_info:
        page.get_by_role("link", name="skipped, failed and warned files (CSV)").click()
    text = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0] == "file,server,outcome,reason"
    assert "notes.txt,,skipped," in text and "not a DICOM file" in text
