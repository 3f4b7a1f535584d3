"""API, user and network fixtures shared by every app's tests."""
import socket
import threading
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
