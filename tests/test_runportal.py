"""The portal as `make run` starts it: web + worker cluster + receiver + demo PACS in real processes.
The README's first minute runs as written (its case list, its curl lines, with a token), the case list
retrieves through the workers and the receiver into the README's layout, and Ctrl-C stops all. A killed
receiver is restarted while the web serves and /healthz names it; stopping the portal with a slow request
in flight frees every port and leaves no process behind."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from apps.dicom import dimse
from apps.dicom.errors import DicomError
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.supervisor import STOP_SECONDS
from tests.fixtures_common import unused_port

ROOT = Path(__file__).resolve().parents[1]


def manage(env, *args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120, **kw)


def portal_env(data_dir: Path) -> dict:
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 50, "SECURE_SSL": "0", "DATA_DIR": str(data_dir),
           "PORT": str(unused_port()), "DICOM_PORT": str(unused_port()), "DEMO_PACS_PORT": str(unused_port()),
           "DJANGO_SUPERUSER_PASSWORD": "a-long-admin-pass", "Q_WORKERS": "1", "WEB_WORKERS": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="module")
def set_up_data(tmp_path_factory, migrated_sqlite) -> tuple[Path, str]:
    """A DATA_DIR as `make run` leaves it before `runportal`: migrated, with the admin account and an API
    token. Made once for the module, copied into each test's own. The migrations (10-20 s) ran once for
    the whole run already: their SQLite file is copied as the portal's (migrated anew on a database server)."""
    data_dir = tmp_path_factory.mktemp("set-up-data")
    env = portal_env(data_dir)
    if migrated_sqlite and "DATABASE_URL" not in env:
        shutil.copyfile(migrated_sqlite, data_dir / "portal.sqlite3")  # where settings.py puts it
    manage(env, "migrate", "--noinput")  # nothing left to apply on the copy: says so in a moment
    assert "Created admin account 'admin'" in manage(env, "ensure_admin").stdout
    assert "exists" in manage(env, "ensure_admin").stdout  # idempotent: a second run leaves it alone
    token = manage(env, "drf_create_token", "admin").stdout.split()[2]
    return data_dir, token


@pytest.fixture
def running_portal(set_up_data, tmp_path):
    template, token = set_up_data
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    env = portal_env(tmp_path)
    log = tmp_path / "portal.log"  # a file, not a pipe: a pipe nobody reads would block the portal's logging
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runportal"], env=env, cwd=ROOT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    proc.output, proc.env = log.read_text, env
    base = f"http://127.0.0.1:{env['PORT']}"
    client = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz").status_code == 200 and \
                    client.post("/api/servers/DEMO/echo/").json().get("ok"):
                break
        except (httpx.HTTPError, ValueError):
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "portal did not come up"
        time.sleep(0.5)
    yield proc, client, tmp_path
    if proc.poll() is None:  # SIGTERM, so the portal stops what it started (its children die with it anyway)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def readme_first_minute() -> tuple[str, list[str]]:
    """The case list and the curl lines of the README's "First minute", exactly as a newcomer copies them."""
    section = (ROOT / "README.md").read_text().split("### First minute", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.S)
    case_list = next(b for b in blocks if b.lstrip().startswith("PatientID,"))
    curls = [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("curl ")]
    return textwrap.dedent(case_list), curls


def test_the_readme_first_minute_works_as_written_then_ctrl_c_stops_all(running_portal, tmp_path):
    proc, client, data_dir = running_portal
    assert httpx.get(str(client.base_url) + "/healthz").json() == {
        "status": "ok", "parts": {"web": "up", "workers": "up", "receiver": "up", "inbox-watcher": "up",
                                  "demo-pacs": "up"}}
    assert httpx.post(str(client.base_url) + "/api/servers/DEMO/echo/").status_code in (401, 403)

    case_list, curls = readme_first_minute()
    assert [c.split("http://127.0.0.1:8000")[1].split('"')[0] for c in curls] == [
        "/api/servers/DEMO/echo/", "/api/servers/DEMO/studies?PatientID=DEMO00001", "/api/retrievals/"]
    (tmp_path / "cases.csv").write_text(case_list)
    token = client.headers["Authorization"].split()[1]
    answers = [json.loads(subprocess.run(["bash", "-c", curl.replace("127.0.0.1:8000", client.base_url.netloc.decode())],
                                         cwd=tmp_path, env={**os.environ, "TOKEN": token}, check=True,
                                         capture_output=True, text=True, timeout=60).stdout) for curl in curls]
    echo, found, job = answers
    assert echo["ok"] is True and echo["error"] is None
    studies = found["studies"]
    assert len(studies) == 2 and {s["PatientID"] for s in studies} == {"DEMO00001"}
    assert job["row_errors"] == [] and len(job["items"]) == 1, job
    deadline = time.monotonic() + 60
    while job["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
        job = client.get(f"/api/retrievals/{job['id']}/").json()
    assert job["status"] == "succeeded", job
    expected = sum(s["NumberOfStudyRelatedInstances"] for s in studies)
    assert job["progress"]["instances"] == expected
    folders = {f"{s['StudyDate']}_DEMO00001_{'-'.join(sorted(s['ModalitiesInStudy']))}" for s in studies}
    assert {p.name for p in (data_dir / "downloads" / "DEMO").iterdir()} == folders, "the README's layout"
    assert len(list((data_dir / "downloads" / "DEMO").rglob("*.dcm"))) == expected

    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=40) == 0
    output = proc.output()
    assert "PACS Portal stopped." in output and "killing" not in output, output[-2000:]
    assert "/api/servers/DEMO/studies" in output, "the access log shows requests"
    assert "watching inboxes" in output and "inbox watcher stopped" in output, "the inbox watcher ran and stopped"
    assert "DEMO00001" not in output, "patient IDs never reach the log at INFO"
    print(f"portal stopped in {time.monotonic() - started:.1f} s")


def portal_parts(data_dir: Path) -> dict:
    return json.loads((data_dir / "portal-status.json").read_text())["parts"]


def group_members(groups: set[int]) -> set[int]:
    """Every process whose process group is one of `groups`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except OSError:
            continue
        if int(fields[2]) in groups:
            found.add(int(stat.parent.name))
    return found


def portal_pids(proc, data_dir: Path) -> set[int]:
    """runportal and every process in the process groups of its children (gunicorn's and qcluster's own)."""
    return {proc.pid} | group_members({part["pid"] for part in portal_parts(data_dir).values()})


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_receiver_and_cluster_are_restarted_while_the_web_serves_and_healthz_names_them(
        running_portal):
    proc, client, data_dir = running_portal
    base, env = str(client.base_url), proc.env
    old_pid = portal_parts(data_dir)["receiver"]["pid"]
    demo_ae = client.get("/api/servers/DEMO/").json()["ae_title"]  # a configured server: the receiver accepts it
    receiver = RemoteAE(ae_title=env.get("DICOM_AE_TITLE", "PACSPORTAL"), host="127.0.0.1",
                        port=int(env["DICOM_PORT"]), connect_timeout=10, query_timeout=10)  # a loaded machine
    assert dimse.echo(receiver, LocalAE(ae_title=demo_ae)) > 0

    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()
    while (health := httpx.get(base + "/healthz")).status_code != 503:
        assert time.monotonic() - killed < 5, "healthz never said the receiver was down"
        time.sleep(0.02)
    body = health.json()
    assert body["status"] == "down" and body["down"] == ["receiver"], body
    assert body["parts"] == {"web": "up", "workers": "up", "receiver": "down", "inbox-watcher": "up", "demo-pacs": "up"}
    assert "receiver is down (exited with code -9" in body["message"]
    assert client.get("/api/servers/").status_code == 200, "the web keeps serving"

    while True:  # back within seconds, and answering DICOM
        try:
            if httpx.get(base + "/healthz").status_code == 200 and dimse.echo(receiver, LocalAE(ae_title=demo_ae)):
                break
        except DicomError:
            pass
        assert time.monotonic() - killed < 10, "the receiver did not come back"
        time.sleep(0.1)
    print(f"receiver back in {time.monotonic() - killed:.1f} s")
    part = portal_parts(data_dir)["receiver"]
    assert part["pid"] != old_pid and part["restarts"] == 1 and part["up"]
    assert proc.poll() is None and "receiver exited with code -9" in proc.output()

    # the worker cluster too: what its killed leader leaves behind is ended before a new one starts
    cluster = portal_parts(data_dir)["workers"]["pid"]
    left_behind = group_members({cluster}) - {cluster}
    assert left_behind, "qcluster runs processes of its own"
    os.kill(cluster, signal.SIGKILL)
    killed = time.monotonic()
    while portal_parts(data_dir)["workers"]["pid"] == cluster or httpx.get(base + "/healthz").status_code != 200:
        assert time.monotonic() - killed < 10, "the cluster did not come back"
        time.sleep(0.1)
    assert [pid for pid in left_behind if alive(pid)] == [], "the old cluster's processes run on"
    assert portal_parts(data_dir)["workers"]["restarts"] == 1


def test_stopping_with_a_slow_request_in_flight_frees_every_port_and_leaves_no_process(running_portal,
                                                                                      silent_listener):
    proc, client, data_dir = running_portal
    port, accepted = silent_listener  # a PACS that accepts the connection and never answers
    created = client.post("/api/servers/", json={"name": "SLOW", "ae_title": "SLOW", "host": "127.0.0.1",
                                                 "port": port})
    assert created.status_code == 201, created.text
    answers = []

    def ask_slowly():  # cut by the stop (a disconnect) or answered first, as the timing falls
        try:
            answers.append(client.get("/api/servers/SLOW/studies", params={"PatientID": "X"}, timeout=60).status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    slow = threading.Thread(target=ask_slowly)
    slow.start()
    deadline = time.monotonic() + 10
    while not accepted:
        assert time.monotonic() < deadline, "the slow request never reached the PACS"
        time.sleep(0.05)
    pids = portal_pids(proc, data_dir)
    assert len(pids) >= 6, pids  # runportal, gunicorn master and worker, qcluster's processes, receiver, demo PACS

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_SECONDS + 10) == 0
    print(f"portal stopped in {time.monotonic() - started:.1f} s with a request in flight")
    slow.join(60)
    assert answers, "the request in flight was neither answered nor cut when the portal stopped"
    assert [pid for pid in pids if alive(pid)] == [], "a process of the portal survived"
    for used in (proc.env["PORT"], proc.env["DICOM_PORT"], proc.env["DEMO_PACS_PORT"]):
        with socket.socket() as s:  # as the next `make run` binds it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(used)))
            s.listen()
    assert "PACS Portal stopped." in proc.output()
