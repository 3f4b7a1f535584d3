"""The DICOM servers admin in a real Chromium: select a server, run the "Test C-ECHO" action, read
the message. The real Orthanc answers; a server on a port nobody listens on gives the reason."""
import pytest

from apps.servers.models import DicomServer
from tests.fixtures_common import unused_port

pytestmark = [pytest.mark.browser, pytest.mark.orthanc, pytest.mark.django_db(transaction=True)]


def run_echo_on(page, server_name: str) -> None:
    page.locator("tr.model-dicomserver th a").first.click()  # the model's link, in the index or the sidebar
    row = page.locator("#result_list tbody tr").filter(has=page.get_by_role("link", name=server_name, exact=True))
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", label="Test C-ECHO")
    page.get_by_role("button", name="Go").click()
    page.wait_for_selector(".messagelist")


def test_c_echo_action_reports_success_and_failure(admin_page, orthanc_servers):
    page = admin_page
    closed = DicomServer.objects.create(name="CLOSED", ae_title="NOBODY", host="127.0.0.1", port=unused_port(),
                                        retries=0)

    run_echo_on(page, "A")
    success = page.locator(".messagelist .success")
    assert success.inner_text().startswith("A: C-ECHO OK in ") and success.inner_text().endswith(" ms.")
    assert page.locator(".messagelist .error").count() == 0

    run_echo_on(page, "CLOSED")
    failure = page.locator(".messagelist .error")
    assert failure.inner_text().startswith("CLOSED: C-ECHO failed — ")
    assert str(closed.port) in failure.inner_text()
    assert page.locator(".messagelist .success").count() == 0
