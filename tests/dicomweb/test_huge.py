"""One huge multi-frame instance STOWed to the portal served as `make run` serves it (gunicorn, gthread
worker): the body is read as it arrives, so the worker's peak RSS grows by far less than the body, and the
file stored is the one sent, byte for byte, catalogued for the account. Then served back by WADO-RS as a
viewer asks for it (the instance, frames, a rendered frame, a thumbnail): each answer costs the worker far
less than the file, and carries the file's own bytes."""
import filecmp
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from PIL import Image
from rest_framework.authtoken.models import Token

from apps.catalog.models import Instance
from apps.dicom import multipart, render
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


@pytest.fixture(scope="module")
def huge_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.dcm"
    return path, write_huge_instance(path, HUGE_MB)


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


def test_a_huge_instance_is_stored_byte_for_byte_in_flat_memory(portal, huge_file, tmp_path):
    base, worker, token, data = portal
    small = write_huge_instance(tmp_path / "small.dcm", 2, rows=256, cols=256)
    assert stow(base, token, tmp_path / "small.dcm").status_code == 200  # every code path loaded once
    huge_path, huge = huge_file
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


def measured(worker: int, request):
    """(response, peak RSS growth of the worker in MB) of `request()`, whose body is read to its end."""
    Path(f"/proc/{worker}/clear_refs").write_text("5")
    before = status_mb(worker, "VmRSS")
    response = request()
    return response, status_mb(worker, "VmHWM") - before


def test_a_huge_instance_is_served_back_by_wado_rs_in_flat_memory(portal, huge_file):
    base, worker, token, _ = portal
    path, huge = huge_file
    size = path.stat().st_size
    assert stow(base, token, path).status_code == 200
    client = httpx.Client(base_url=base, timeout=300, headers={"Authorization": f"Token {token}"})
    url = f"/dicomweb/studies/{huge.StudyInstanceUID}/series/{huge.SeriesInstanceUID}/instances/{huge.SOPInstanceUID}"
    client.get(f"{url}/frames/1")  # every code path loaded once
    client.get(f"{url}/frames/1/rendered")
    growths = {}

    def whole():
        digest, head, in_file = hashlib.sha1(), b"", False
        with client.stream("GET", url) as response:
            for piece in response.iter_bytes(PIECE):
                if not in_file:  # the part's head, then the file
                    head += piece
                    if b"\r\n\r\n" not in head:
                        continue
                    head, piece = head.split(b"\r\n\r\n", 1)
                    in_file = True
                digest.update(piece)
        return response, digest.hexdigest()

    (response, digest), growths["instance"] = measured(worker, whole)
    boundary = multipart.parse_media_type(response.headers["Content-Type"])[1]["boundary"]
    expected = hashlib.sha1()
    with open(path, "rb") as fp:
        while piece := fp.read(PIECE):
            expected.update(piece)
    expected.update(b"\r\n" + multipart.closing(boundary))
    assert response.status_code == 200 and digest == expected.hexdigest(), "the instance's bytes, as stored"

    last = huge.NumberOfFrames
    frames, growths["frames"] = measured(worker, lambda: client.get(f"{url}/frames/{last},2"))
    assert frames.status_code == 200, frames.text
    boundary = multipart.parse_media_type(frames.headers["Content-Type"])[1]["boundary"]
    parts = [frames.content[p.start:p.end] for p in multipart.split(frames.content, boundary)]
    frame_bytes = 1024 * 1024 * 2
    with open(path, "rb") as fp:
        fp.seek(size - frame_bytes)
        assert parts[0] == fp.read(frame_bytes)  # the last frame ends the file
        fp.seek(size - (last - 1) * frame_bytes)
        assert parts[1] == fp.read(frame_bytes)
    rendered, growths["rendered"] = measured(worker, lambda: client.get(f"{url}/frames/{last}/rendered",
                                                                       headers={"Accept": "image/png"}))
    assert rendered.status_code == 200 and rendered.content[:4] == b"\x89PNG"
    shown = np.asarray(Image.open(io.BytesIO(rendered.content)))
    assert np.array_equal(shown, render.read_frame(path, last - 1).display())  # that frame, not another
    thumbnail, growths["thumbnail"] = measured(worker, lambda: client.get(f"{url}/thumbnail"))
    assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"
    missing = client.get(f"{url}/frames/{last + 1}")
    assert missing.status_code == 404 and f"frame {last + 1} does not exist" in missing.json()["detail"]
    print(f"WADO-RS of a {size / 1e6:.0f} MB instance, the worker's peak RSS growth: "
          + ", ".join(f"{k} {v:.1f} MB" for k, v in growths.items()))
    assert all(growth < 100 for growth in growths.values()), growths
