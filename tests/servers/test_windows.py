"""A server's time windows: validated (every bad window named), read in the portal's time zone, crossing
midnight; a retrieval row for a server outside its window waits and its job says until when, a row that
started inside finishes its study, and the rows run once the window opens — against a real Orthanc (C-GET),
with the clock the check reads replaced instead of waiting for the evening."""
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.jobs import runner
from apps.jobs.models import JobStatus
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.servers import windows
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders
from tests.jobs.test_priority import drain

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = [{"direction": "retrieve", "days": "mon,tue,wed,thu,fri", "start": "20:00", "end": "07:00"}]


def at(text: str) -> datetime:
    """A wall-clock time in Berlin: 2026-12-07 is a Monday."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


@pytest.mark.parametrize("bad,named", [
    ({"direction": "retrieve", "start": "20:00", "end": "07:00"}, None),  # fine: every day
    ("nightly", "must be a list"),
    ([{"direction": "move", "start": "20:00", "end": "07:00"}], "Window 1: direction must be one of"),
    ([{"direction": "send", "start": "25:00", "end": "07:00"}], "Window 1: start: '25:00' is not a time HH:MM"),
    ([{"direction": "send", "start": "8:00", "end": "07:00"}], "Window 1: start: '8:00' is not a time"),
    ([{"direction": "send", "start": "08:00", "end": 7}], "Window 1: end: '7' is not a time"),
    ([NIGHT[0], {"direction": "send", "days": "mon,funday", "start": "08:00", "end": "09:00"}],
     "Window 2: days: 'funday' is not one of mon,tue"),
    ([{"direction": "send", "start": "08:00", "end": "08:00"}], "start and end are both 08:00"),
    ([{"direction": "send", "start": "08:00", "end": "09:00", "who": "me"}], "unknown key(s) who"),
    (["20:00-07:00"], "Window 1 must be an object"),
])
def test_windows_are_validated_and_the_error_names_the_window_and_rule(bad, named):
    value = [bad] if isinstance(bad, dict) else bad
    if named is None:
        windows.validate_windows(value)
        return
    with pytest.raises(ValidationError) as caught:
        windows.validate_windows(value)
    assert named in caught.value.messages[0]


def test_a_night_window_crosses_midnight_on_its_days_only():
    assert windows.opens_at(NIGHT, "retrieve", at("2026-12-07T23:30")) is None  # Monday night
    assert windows.opens_at(NIGHT, "retrieve", at("2026-12-08T06:59")) is None  # Tuesday, before 07:00
    assert windows.opens_at(NIGHT, "retrieve", at("2026-12-08T07:00")) == at("2026-12-08T20:00")
    assert windows.opens_at(NIGHT, "retrieve", at("2026-12-12T02:00")) is None  # Friday's night runs into Sat
    assert windows.opens_at(NIGHT, "retrieve", at("2026-12-12T21:00")) == at("2026-12-14T20:00")  # not Sat
    assert windows.opens_at(NIGHT, "retrieve", at("2026-12-07T06:00")) == at("2026-12-07T20:00")  # Sunday's none
    assert windows.opens_at(NIGHT, "send", at("2026-12-08T12:00")) is None  # no send window: always open
    assert windows.describe_opening(at("2026-12-14T20:00"), at("2026-12-12T21:00")) == "opens mon at 20:00"


def test_the_api_refuses_a_bad_window_naming_it_and_keeps_a_good_one(api, db):
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    bad = api.patch("/api/servers/LK/", {"windows": [NIGHT[0], {"direction": "retrieve", "start": "24:00",
                                                                 "end": "07:00"}]}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"windows": ["Window 2: start: '24:00' is not a time HH:MM (00:00 to 23:59)."]}
    good = api.patch("/api/servers/LK/", {"windows": NIGHT}, format="json")
    assert good.status_code == 200 and good.json()["windows"] == NIGHT
    assert DicomServer.objects.get(name="LK").windows == NIGHT


@pytest.fixture
def night_server(db, orthanc, settings, tmp_path):
    own_data_folders(settings, tmp_path)
    settings.TIME_ZONE = "Europe/Berlin"
    peer = orthanc.peer()
    return DicomServer.objects.create(name="LK", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                      retries=0, retrieve_method="c-get", windows=NIGHT)


def case_list_for(studies) -> bytes:
    lines = ["PatientID,StudyDate,Modality,Server"]
    lines += [f"{s['PatientID']},{s['StudyDate'][:4]}-{s['StudyDate'][4:6]}-{s['StudyDate'][6:]},"
              f"{s['Modality']},LK" for s in studies]
    return "\n".join(lines).encode()


@pytest.mark.django_db(transaction=True)
def test_rows_wait_outside_the_window_and_run_when_it_opens(night_server, orthanc, orthanc_dataset, broker,
                                                            api, user, monkeypatch):
    clock = {"now": at("2026-12-08T12:00")}  # Tuesday noon: the night window opens at 20:00
    monkeypatch.setattr(windows, "now", lambda: clock["now"])
    studies = orthanc_dataset["studies"][:2]
    job = RetrievalJob.from_case_list(intake.read_case_list(case_list_for(studies), user=user), user=user,
                                      source_name="cases.csv")
    drain(broker)
    assert job.progress()["pending"] == 2 and job.progress()["succeeded"] == 0
    body = api.get(f"/api/retrievals/{job.pk}/").json()
    assert body["waiting"] == "Waiting for the window of LK, opens at 20:00 (retrieve)."
    assert body["status"] == "running" and body["paused"] is False
    assert runner.sweep() == 2 and drain(broker) is None  # the minute sweep: still closed, held again
    assert RetrievalJob.objects.get(pk=job.pk).waiting_reason().startswith("Waiting for the window of LK")

    clock["now"] = at("2026-12-08T20:00")
    runner.sweep()
    drain(broker)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, list(job.items.values_list("status", "error"))
    for item in job.items.all():
        assert item.instances == item.expected > 0 and item.attempts == 1 and item.waiting == ""


@pytest.mark.django_db(transaction=True)
def test_a_row_that_started_in_the_window_finishes_its_study_and_the_next_waits(
        night_server, orthanc, orthanc_dataset, broker, user, monkeypatch):
    checks = []

    def clock():  # the window closes right after the first row was let in
        checks.append(1)
        return at("2026-12-08T06:59") if len(checks) == 1 else at("2026-12-08T07:00")

    monkeypatch.setattr(windows, "now", clock)
    studies = orthanc_dataset["studies"][:2]
    job = RetrievalJob.from_case_list(intake.read_case_list(case_list_for(studies), user=user), user=user,
                                      source_name="cases.csv")
    drain(broker)
    first, second = job.items.order_by("line")
    assert first.status == "succeeded" and first.instances == first.expected > 0
    assert second.status == "pending" and second.waiting == "Waiting for the window of LK, opens at 20:00 (retrieve)."
    assert second.attempts == 0 and second.queued_at is None


@pytest.mark.django_db
def test_windows_are_read_in_the_portal_time_zone(settings, monkeypatch):
    settings.TIME_ZONE = "Asia/Tokyo"
    timezone.deactivate()
    server = DicomServer(name="LK", windows=[{"direction": "send", "start": "09:00", "end": "10:00"}])

    class Send:
        def direction(self):
            return "send"

        def servers(self):
            return [server]

        def held_with(self, server):
            return {}

    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 12, 8, 0, 30, tzinfo=ZoneInfo("UTC")))
    assert windows.hold(Send()) is None  # 09:30 in Tokyo
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 12, 8, 9, 30, tzinfo=ZoneInfo("UTC")))
    # 18:30 on Tuesday in Tokyo (09:30 UTC): tomorrow's window is the next
    assert windows.hold(Send()).reason == "Waiting for the window of LK, opens wed at 09:00 (send)."
