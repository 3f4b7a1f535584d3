"""One huge multi-frame instance STOWed to the portal served as `make run` serves it (gunicorn, gthread
worker): the body is read as it arrives, so the worker's peak RSS grows by far less than the body, and the
file stored is the one sent, byte for byte, catalogued for the account."""
import filecmp
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from rest_framework.authtoken.models import Token

from apps.catalog.models import Instance
from apps.dicom.demo.huge import write_huge_instance
from tests.fixtures_common import unused_port
from tests.pacs import port_open

pytestmark = pytest.mark.django_db(transaction=True)  # the server process reads the rows this test commits

ROOT = Path(__file__).resolve().parents[2]
HUGE_MB = 250
PIECE = 1024 * 1024


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def database_url() -> str:
    """The test database, for the server process (SQLite's file or PostgreSQL's test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'])}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_of(master: int) -> int:
    deadline = time.monotonic() + 30
    while not (children := Path(f"/proc/{master}/task/{master}/children").read_text().split()):
        assert time.monotonic() < deadline, "gunicorn started no worker"
        time.sleep(0.1)
    return int(children[0])


@pytest.fixture
def portal(tmp_path, django_user_model):
    """gunicorn over the test database; (base URL, the worker's pid, a token of a user who may STOW, data)."""
    user = django_user_model.objects.create(username="stower")
    user.user_permissions.add(Permission.objects.get(codename="store_dicomweb"))
    token = Token.objects.create(user=user).key
    data = tmp_path / "data"
    port = unused_port()
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 50, "SECURE_SSL": "0", "ALLOWED_HOSTS": "127.0.0.1",
           "DATA_DIR": str(data), "DOWNLOADS_DIR": str(data / "downloads"), "LOG_LEVEL": "WARNING",
           "DATABASE_URL": database_url()}
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "pacsportal.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "--timeout", "120"],
                              env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", worker_of(server.pid), token, data
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def stow(base: str, token: str, path: Path) -> httpx.Response:
    """STOW-RS of one file as a one-part body, sent piece by piece with its Content-Length."""
    boundary = uuid.uuid4().hex
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        with open(path, "rb") as fp:
            while piece := fp.read(PIECE):
                yield piece
        yield tail

    return httpx.post(f"{base}/dicomweb/studies", content=body(), timeout=300, headers={
        "Authorization": f"Token {token}", "Accept": "application/dicom+json",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Content-Length": str(len(head) + path.stat().st_size + len(tail))})


def test_a_huge_instance_is_stored_byte_for_byte_in_flat_memory(portal, tmp_path):
    base, worker, token, data = portal
    small = write_huge_instance(tmp_path / "small.dcm", 2, rows=256, cols=256)
    assert stow(base, token, tmp_path / "small.dcm").status_code == 200  # every code path loaded once
    huge_path = tmp_path / "huge.dcm"
    huge = write_huge_instance(huge_path, HUGE_MB)
    size = huge_path.stat().st_size
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM starts again from here, not from start-up
    before = status_mb(worker, "VmRSS")

    response = stow(base, token, huge_path)

    growth = status_mb(worker, "VmHWM") - before
    print(f"STOW-RS of {size / 1e6:.0f} MB: the worker's peak RSS grew {growth:.1f} MB (from {before:.0f} MB)")
    assert response.status_code == 200, response.text
    assert response.json()["00081199"]["Value"][0]["00081155"]["Value"] == [huge.SOPInstanceUID]
    folder = data / "downloads" / "received" / "stower" / "dicomweb"
    stored = folder / huge.StudyInstanceUID / f"{huge.SOPInstanceUID}.dcm"
    assert filecmp.cmp(stored, huge_path, shallow=False)
    assert Instance.objects.get(sop_instance_uid=huge.SOPInstanceUID).size == size
    assert sorted(p.name for p in folder.iterdir()) == sorted({".stow", small.StudyInstanceUID, huge.StudyInstanceUID})
    assert not list((folder / ".stow").iterdir()), "nothing left staged"
    assert growth < 100, f"the worker grew {growth:.0f} MB for a {size / 1e6:.0f} MB body"
