"""The admin's home page in a real Chromium: the dashboard draws health, free space and the chart of
instances per hour from real item rows, shows a job started after the page loaded without a reload, and
still fits a 360 px wide phone screen. Chart.js comes from the portal's own static files."""
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USER, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
REFRESH_WAIT_MS = 15_000  # the page refreshes every 5 s

# Painted (not transparent) pixels of the chart's canvas.
PAINTED = """() => { const c = document.getElementById('dash-chart');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""


def finished_retrieval(instances_per_hour: list[int]) -> RetrievalJob:
    server, _ = DicomServer.objects.get_or_create(name="LK", defaults={"ae_title": "LK", "host": "127.0.0.1",
                                                                        "port": 104})
    job = RetrievalJob.objects.create(status="succeeded", source_name="list.csv")
    now = timezone.now()
    for hours_ago, instances in enumerate(instances_per_hour):
        RetrievalItem.objects.create(job=job, line=hours_ago + 1, patient_id="P", server_name="LK", dicom_server=server,
                                     status="succeeded", instances=instances,
                                     finished_at=now - timedelta(hours=hours_ago, minutes=1))
    return job


def chart_bars(page) -> dict:
    return page.evaluate("() => Chart.getChart('dash-chart').data.datasets.map(d => [d.label, d.data])")


def test_the_dashboard_draws_and_follows_the_work_without_reloading(admin_page, live_server, django_user_model):
    finished_retrieval([40, 0, 25, 10])
    page = admin_page
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#portal-dashboard[data-refreshed]")
    assert page.locator("#dash-health li[data-part=web] .dash-state").inner_text() == "up"
    assert page.locator("#dash-disk li").count() == 5
    assert "free of" in page.locator("#dash-disk li[data-folder=downloads]").inner_text()
    bars = dict(chart_bars(page))
    assert sum(bars["Retrieval from PACS"]) == 75 and len(bars["Retrieval from PACS"]) == 24
    assert page.evaluate(PAINTED) > 500, "the chart is drawn, not a blank canvas"
    assert "Nothing running or waiting." in page.locator("#dash-jobs").inner_text()

    page.evaluate("window.notReloaded = true")
    hostile = '<img src=x onerror="window.pwned = 1">started later'  # a description is user input
    started = RetrievalJob.objects.create(status="running", source_name="late.csv", description=hostile,
                                          created_by=django_user_model.objects.get(username=ADMIN_USER))
    RetrievalItem.objects.create(job=started, line=1, patient_id="P", server_name="LK",
                                 dicom_server=DicomServer.objects.get(name="LK"))
    page.wait_for_selector(f"#dash-jobs a:text('{started}')", timeout=REFRESH_WAIT_MS)
    assert page.evaluate("window.notReloaded") is True, "the page was not reloaded"
    assert hostile in page.locator("#dash-jobs").inner_text(), "shown as the text it is"
    assert page.locator("#dash-jobs img").count() == 0 and page.evaluate("window.pwned") is None
    assert page.locator("#dash-jobs progress").get_attribute("max") == "1"


def test_the_dashboard_fits_a_phone_screen(browser, live_server, django_user_model):
    django_user_model.objects.create_superuser(username=ADMIN_USER, password=ADMIN_PASSWORD, email="")
    finished_retrieval([12, 30])
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    try:
        page = log_in(context.new_page(), live_server, ADMIN_USER, ADMIN_PASSWORD)
        page.wait_for_selector("#portal-dashboard[data-refreshed]")
        section = page.evaluate("() => { const s = document.getElementById('portal-dashboard');"
                                " return [s.scrollWidth, s.clientWidth]; }")
        assert section[0] <= section[1], "nothing of the dashboard sticks out sideways"
        canvas = page.locator("#dash-chart").bounding_box()
        assert 200 < canvas["width"] <= 360
        assert page.evaluate(PAINTED) > 300
    finally:
        context.close()


def test_the_chart_library_is_served_by_the_portal(admin_page, live_server):
    page = admin_page
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(live_server.url) else None)
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#portal-dashboard[data-refreshed]")
    assert page.evaluate("typeof Chart") == "function"
    assert outside == []
