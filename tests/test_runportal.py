"""The portal as `make run` starts it: web + worker cluster + receiver + demo PACS in real processes.
The README's first minute runs as written (its case list, its curl lines, with a token), the case list
retrieves through the workers and the receiver into the README's layout, and Ctrl-C stops all."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures_common import unused_port

ROOT = Path(__file__).resolve().parents[1]


def manage(env, *args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def running_portal(tmp_path):
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 50, "SECURE_SSL": "0", "DATA_DIR": str(tmp_path),
           "PORT": str(unused_port()), "DICOM_PORT": str(unused_port()), "DEMO_PACS_PORT": str(unused_port()),
           "DJANGO_SUPERUSER_PASSWORD": "a-long-admin-pass", "Q_WORKERS": "1", "WEB_WORKERS": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage(env, "migrate", "--noinput")
    assert "Created admin account 'admin'" in manage(env, "ensure_admin").stdout
    assert "exists" in manage(env, "ensure_admin").stdout  # idempotent: a second run leaves it alone
    token = manage(env, "drf_create_token", "admin").stdout.split()[2]
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runportal"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
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
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def readme_first_minute() -> tuple[str, list[str]]:
    """The case list and the curl lines of the README's "First minute", exactly as a newcomer copies them."""
    section = (ROOT / "README.md").read_text().split("### First minute", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.S)
    case_list = next(b for b in blocks if b.lstrip().startswith("PatientID,"))
    curls = [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("curl ")]
    return textwrap.dedent(case_list), curls


def test_the_readme_first_minute_works_as_written_then_ctrl_c_stops_all(running_portal, tmp_path):
    proc, client, data_dir = running_portal
    assert httpx.get(str(client.base_url) + "/healthz").json() == {"status": "ok"}
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
    output = proc.stdout.read()
    assert "PACS Portal stopped." in output and "killing" not in output, output[-2000:]
    assert "/api/servers/DEMO/studies" in output, "the access log shows requests"
    assert "DEMO00001" not in output, "patient IDs never reach the log at INFO"
    print(f"portal stopped in {time.monotonic() - started:.1f} s")
