"""The admin case-list upload in a real Chromium, for a staff user whose group may not retrieve from one
of the servers: the preview marks that server's rows bad with the reason, and only the others run."""
import pytest
from django.contrib.auth.models import Group, Permission

from apps.retrieval.models import RetrievalJob
from tests.browser.conftest import log_in, preview_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WARD_USER, WARD_PASSWORD = "ward-tech", "ward-pass-123"


@pytest.fixture
def ward_page(page, live_server, django_user_model):
    """Logged in through the real login form as staff in group Ward: may start retrievals and see them."""
    ward = Group.objects.create(name="Ward")
    ward.permissions.set(Permission.objects.filter(codename__in=["start_retrieval", "view_retrievaljob",
                                                            "handle_identified_data"]))
    user = django_user_model.objects.create_user(WARD_USER, password=WARD_PASSWORD, is_staff=True)
    user.groups.add(ward)
    return log_in(page, live_server, WARD_USER, WARD_PASSWORD)


def test_rows_for_a_server_the_group_may_not_use_are_bad_rows_on_the_preview(ward_page, live_server,
                                                                             orthanc_servers, tmp_path):
    page = ward_page
    closed, open_server = orthanc_servers  # A and B: the same Orthanc
    radiology = Group.objects.create(name="Radiology")
    closed.open_to_everyone = False
    closed.save()
    closed.retrieve_groups.add(radiology)
    case_file = tmp_path / "cases.csv"
    case_file.write_text("PatientID,StudyDate,Modality,Server\nP1,2021-03-01,CT,A\nP2,2021-03-02,MR,B\n"
                         "P3,2021-03-03,,a\n", encoding="utf-8")

    page.goto(f"{live_server.url}/admin/retrieval/retrievaljob/")
    page.get_by_role("link", name="Upload case lists").click()
    page.set_input_files("#id_files", str(case_file))
    page.get_by_role("button", name="Preview").click()

    summary, bad, good_lines = preview_rows(page)
    assert summary == "1 row will run, 2 bad rows will be skipped."
    reason = ("You may not retrieve from server 'A': it is open only to its retrieve groups. "
              "Ask an administrator to add you to one of them.")
    assert bad == {"2": reason, "4": reason}
    assert good_lines == ["3"]

    page.get_by_role("button", name="Start retrieval").click()
    page.wait_for_url("**/admin/retrieval/retrievaljob/")
    job = RetrievalJob.objects.get()
    assert [(item.line, item.server_name) for item in job.items.all()] == [(3, "B")]
    assert [e["line"] for e in job.row_errors] == [2, 4]


def test_a_staff_user_without_start_retrieval_cannot_open_the_upload_page(page, live_server, django_user_model):
    looker_group = Group.objects.create(name="Lookers")
    looker_group.permissions.set(Permission.objects.filter(codename="view_retrievaljob"))
    django_user_model.objects.create_user("looker", password="looker-pass-123", is_staff=True).groups.add(looker_group)
    log_in(page, live_server, "looker", "looker-pass-123")
    page.goto(f"{live_server.url}/admin/retrieval/retrievaljob/")
    assert page.get_by_role("link", name="Upload case lists").count() == 0  # not offered
    response = page.goto(f"{live_server.url}/admin/retrieval/retrievaljob/upload/")
    assert response.status == 403
    assert page.get_by_role("button", name="Preview").count() == 0
