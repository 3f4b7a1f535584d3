"""API, user and network fixtures shared by every app's tests."""
import contextlib
import os
import shutil
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """The production hasher (its algorithm, hash format and checks) with fewer rounds: a million rounds
    cost ~0.5 s of CPU for every account a test makes and every password login, hundreds of seconds over
    the suite. The processes tests start (workers, `runportal`) keep the production rounds."""

    iterations = 1000


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashing():
    from django.conf import settings
    from django.test.utils import override_settings

    others = [h for h in settings.PASSWORD_HASHERS if not h.endswith(".PBKDF2PasswordHasher")]
    with override_settings(PASSWORD_HASHERS=[f"{__name__}.QuickPBKDF2PasswordHasher", *others]):
        yield


@pytest.fixture(autouse=True)
def fresh_cache():
    """API rate counters live in the cache, which outlives a test's database: start each test at zero."""
    from django.core.cache import cache

    cache.clear()


# The settings that place the portal's data, and the folder of its own (under tmp_path) each gets in a test that
# writes there. A test's writes in the worker's shared DATA_DIR (tests/testenv.py) outlive it and are seen by
# the tests after it on that worker: a C-GET test once counted .dcm files another test had filed.
DATA_FOLDERS = {"DATA_DIR": "data", "STAGING_DIR": "staging", "DOWNLOADS_DIR": "downloads",
                "QUARANTINE_DIR": "quarantine", "PHOTOS_DIR": "photos", "UPLOADS_DIR": "uploads",
                "DELIVERY_ZIP_DIR": "zips", "IMPORT_JPG_DIR": "jpg"}


def own_data_folders(settings, tmp_path) -> None:
    """Point DATA_DIR and every data folder at the test's own, tmp_path/<name> (DATA_FOLDERS), so what the
    test writes goes with its tmp_path. Processes the test starts get them by their environment."""
    for name, folder in DATA_FOLDERS.items():
        setattr(settings, name, tmp_path / folder)


@pytest.fixture
def data_folders(settings, tmp_path):
    """DATA_DIR and the data folders of this test's own (own_data_folders)."""
    own_data_folders(settings, tmp_path)
    return settings


@pytest.fixture(scope="session")
def shared_data_folders() -> tuple[list[Path], str]:
    """The worker's shared data folders as the session began (DATA_DIR, and any data folder set outside it),
    and the name its SQLite test database files begin with (the one thing meant to stay there)."""
    from django.conf import settings

    data = Path(settings.DATA_DIR)
    roots = [data, *(Path(getattr(settings, name)) for name in DATA_FOLDERS
                     if not Path(getattr(settings, name)).is_relative_to(data))]
    database = Path(settings.DATABASES["default"].get("TEST", {}).get("NAME") or "").name
    return roots, database


def entries_under(roots: list[Path], database: str) -> set[str]:
    found = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            found.update(os.path.join(folder, name) for name in dirs + files
                         if not (database and folder == str(root) and name.startswith(database)))
    return found


@pytest.fixture(autouse=True)
def leaves_nothing_in_the_shared_data_folders(shared_data_folders):
    """Fail a test that leaves files or folders in the worker's shared data folders, naming them, and remove
    them so the tests after it do not see them. (A walk of near-empty folders: some 0.1 ms a test.)"""
    before = entries_under(*shared_data_folders)
    yield
    left = sorted(entries_under(*shared_data_folders) - before)
    if not left:
        return
    for path in reversed(left):  # deepest first
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    shown = "\n  ".join(left[:20]) + (f"\n  ... and {len(left) - 20} more" if len(left) > 20 else "")
    pytest.fail(f"left {len(left)} entries in the worker's shared data folders (tests see each other's files "
                f"there); give the test folders of its own (own_data_folders or the data_folders fixture in "
                f"tests/fixtures_common.py, or a fixture of its area that calls it):\n  {shown}", pytrace=False)


@pytest.fixture
def user(db, django_user_model):
    """A technologist: every permission except "view all jobs" (so they see only their own jobs), in no
    group, not staff. tests/access/ has users with exactly one permission, or none."""
    from django.contrib.auth.models import Permission

    tech = django_user_model.objects.create_user(username="tech", password="tech-pass-123")
    tech.user_permissions.set(Permission.objects.exclude(content_type__app_label="jobs", codename="view_all_jobs"))
    return tech


@pytest.fixture
def api(user):
    """An API client authenticated with a real DRF token (the way scripts use the portal)."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin_client_logged_in(db, django_user_model, client):
    admin = django_user_model.objects.create_superuser(username="boss", password="boss-pass-123", email="")
    client.force_login(admin)
    client.user = admin
    return client


def unused_port() -> int:
    """A loopback TCP port nobody listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    return unused_port()


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never says a word (a hung PACS, a wrong service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def trust_url_host(settings, url: str) -> str:
    """List `url`'s host:port in TRUSTED_HTTP_HOSTS, as an operator does for a PACS on this machine or
    reached over plain http (the outbound-URL rule refuses loopback and http otherwise, also at send time)."""
    parts = urlsplit(url)
    settings.TRUSTED_HTTP_HOSTS = [*settings.TRUSTED_HTTP_HOSTS, f"{parts.hostname}:{parts.port}"]
    return url
