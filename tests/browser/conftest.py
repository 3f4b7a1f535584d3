"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's sync API against
pytest-django's live_server. One browser per session, a fresh context (cookies, storage) per test,
and a full-page screenshot in the test's tmp dir when a test fails. Nothing downloads: Playwright's
own browser builds are never used."""
import os

import pytest
from playwright.sync_api import sync_playwright

from tests.retrieval.conftest import orthanc_servers, portal  # noqa: F401  (fixtures shared with retrieval)

CHROMIUM = "/usr/bin/chromium"
# Keep Chromium off the network: no update checks, sync, QUIC or other background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
TIMEOUT_MS = 10_000
ADMIN_USER, ADMIN_PASSWORD = "chief-tech", "chief-pass-123"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so the page fixture knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def browser():
    """One Chromium for the browser tests. Playwright's sync API keeps an asyncio loop running in this
    thread while it lives, and Django refuses ORM calls beside a running loop; the tests' own ORM calls
    are plain synchronous ones, so the check is lifted exactly as long as Playwright runs. Package scope
    (this folder) ends both before any other test folder runs."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, request, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        tab.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failed page: {shot}")
    context.close()


def log_in(page, live_server, username: str, password: str):
    """Log in to the admin through the real login form."""
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def preview_rows(page) -> tuple[str, dict[str, str], list[str]]:
    """The case-list preview as read on screen: its summary, {line: problem} of the bad rows, the good lines."""
    summary = " ".join(page.locator(".preview-summary").inner_text().split())
    bad = {row.locator("td").nth(0).inner_text(): row.locator("td").nth(2).inner_text()
           for row in page.locator("table.bad-rows tbody tr").all()}
    return summary, bad, page.locator("table.good-rows tbody tr td:first-child").all_inner_texts()


@pytest.fixture
def admin_page(page, live_server, django_user_model):
    """A page logged in to the admin through the real login form, as a superuser."""
    django_user_model.objects.create_superuser(username=ADMIN_USER, password=ADMIN_PASSWORD, email="")
    return log_in(page, live_server, ADMIN_USER, ADMIN_PASSWORD)
