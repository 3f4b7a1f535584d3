"""Look before you fetch, in a real Chromium: upload a case list, press *Query only*, see the studies each
row found on the job page, tick one and press *Retrieve the ticked studies*: the new job holds exactly it."""
import pytest

from apps.jobs import runner
from apps.retrieval.models import RetrievalJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.orthanc
def test_query_only_then_retrieve_the_ticked_study(admin_page, live_server, orthanc_dataset, orthanc_servers,
                                                   tmp_path):
    studies = orthanc_dataset["studies"]
    patient = studies[0]["PatientID"]
    case_file = tmp_path / "cases.csv"
    case_file.write_text(f"PatientID,StudyDate,Modality,Server\n{patient},2021-03-01..2021-03-31,,B\n"
                         "NOBODY,2021-03-01,,B\n", encoding="utf-8")
    page = admin_page
    page.get_by_role("link", name="Retrieval jobs").first.click()
    page.get_by_role("link", name="Upload case lists").click()
    page.set_input_files("#id_files", str(case_file))
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("button", name="Query only (move nothing)").click()
    page.wait_for_url("**/admin/retrieval/retrievaljob/")
    job = RetrievalJob.objects.get()
    assert job.mode == "query"
    runner.run_inline(job)

    page.goto(f"{live_server.url}/admin/retrieval/retrievaljob/{job.pk}/change/")
    rows = page.locator("table.found-studies tr.found-row")
    expected = [s["StudyInstanceUID"] for s in studies if s["PatientID"] == patient]
    assert rows.count() == len(expected) == 2
    assert "no study on B matches line 3" in page.locator(".job-items td.flag").all_inner_texts()
    chosen = expected[1]
    page.locator(f'input[name="study"][value="{chosen}"]').check()
    page.get_by_role("button", name="Retrieve the ticked studies").click()
    page.wait_for_url("**/change/")
    started = RetrievalJob.objects.exclude(pk=job.pk).get()
    assert [i.study_instance_uid for i in started.items.all()] == [chosen]
    assert page.url.endswith(f"/retrievaljob/{started.pk}/change/")
