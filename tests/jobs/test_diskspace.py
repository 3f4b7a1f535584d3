"""The data folders' floors (apps/jobs/diskspace.py) with the free-space function injected: the words a job
waits with, per-folder overrides, a floor of 0, /healthz degraded, and operators told once per folder."""
import pytest

from apps.jobs import diskspace

GB = 10 ** 9


@pytest.fixture
def free(monkeypatch, settings, tmp_path):
    """Free bytes per folder path, as the injected free-space function reports them."""
    settings.MIN_FREE_GB, settings.MIN_FREE_GB_BY_FOLDER = 10, {}
    for folder, name in diskspace.FOLDERS.items():
        setattr(settings, name, tmp_path / folder)
    space = {}
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: space.get(path.name, 100 * GB))
    monkeypatch.setattr(diskspace, "_alerted", {})
    return space


class Writer:
    def __init__(self, *folders):
        self.folders = folders

    def writes_to(self):
        return self.folders


def test_an_item_writing_to_a_folder_below_its_floor_waits_saying_how_much_is_free(free, tmp_path):
    free["staging"] = int(3.1 * GB)
    hold = diskspace.hold(Writer("staging", "downloads"))
    assert hold.reason == f"Waiting: 3.1 GB free on {tmp_path}/staging, 10 GB required (MIN_FREE_GB)."
    assert hold.same == {}  # the job's other items write there too
    assert diskspace.hold(Writer("downloads", "imports")) is None
    assert diskspace.hold(Writer()) is None  # an echo writes nothing


def test_a_folder_has_its_own_floor_and_0_turns_it_off(free, settings, tmp_path):
    settings.MIN_FREE_GB_BY_FOLDER = {"staging": 50, "imports": 0}
    free["downloads"], free["imports"] = 20 * GB, 0
    assert diskspace.hold(Writer("downloads")) is None and diskspace.hold(Writer("imports")) is None
    assert diskspace.hold(Writer("staging")) is None  # 100 GB free
    free["staging"] = 40 * GB
    assert diskspace.hold(Writer("staging")).reason == (f"Waiting: 40 GB free on {tmp_path}/staging, 50 GB "
                                                        "required (MIN_FREE_GB_STAGING).")
    settings.MIN_FREE_GB = 0
    free["downloads"] = 512 * 10 ** 6
    assert diskspace.hold(Writer("downloads")) is None


def test_a_folder_that_cannot_be_read_counts_as_full(free, monkeypatch):
    def broken(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(diskspace, "free_bytes", broken)
    assert diskspace.hold(Writer("photos")).reason.startswith("Waiting: 0 MB free on ")


def test_free_bytes_reads_the_nearest_existing_folder(tmp_path):
    assert diskspace.free_bytes(tmp_path / "not" / "yet") == diskspace.free_bytes(tmp_path) > 0


@pytest.mark.django_db
def test_healthz_says_degraded_naming_the_folder_and_ok_again_once_space_returns(free, client, tmp_path, settings):
    settings.DATA_DIR = tmp_path  # no runportal status file: only the checks speak
    free["downloads"] = int(2.5 * GB)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "parts": {"disk": "low"}, "degraded": ["disk"],
                               "message": f"disk is low (downloads: 2.5 GB free on {tmp_path}/downloads, 10 GB "
                                          "required (MIN_FREE_GB))"}
    free["downloads"] = 11 * GB
    assert client.get("/healthz").json() == {"status": "ok"}


def test_operators_are_told_once_per_folder_within_the_hour(free, monkeypatch):
    told = []
    monkeypatch.setattr(diskspace, "notify_operators", lambda cause, subject, body: told.append((cause, subject, body)))
    free["staging"], free["uploads"] = GB, GB
    assert diskspace.watch() == 2 and diskspace.watch() == 2
    diskspace.hold(Writer("staging"))
    assert [cause for cause, _, _ in told] == ["disk-low:staging", "disk-low:uploads"]
    assert "1 GB free on" in told[0][2] and "10 GB required" in told[0][2]


@pytest.mark.django_db
def test_the_watch_runs_every_minute():
    from django_q.models import Schedule

    from apps.jobs.apps import DISK_SCHEDULE

    schedule = Schedule.objects.get(name=DISK_SCHEDULE)
    assert schedule.func == "apps.jobs.diskspace.watch" and schedule.minutes == 1
