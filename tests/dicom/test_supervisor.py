"""apps/dicom/supervisor.py with plain commands: restarts with growing delays while the others run on, a stop
that ends children and grandchildren that ignore SIGTERM, children that die with a killed supervisor,
and /healthz reading its status file."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from apps.dicom.supervisor import Supervisor

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(60)"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return result


def test_a_dying_child_is_restarted_with_growing_delays_and_the_others_run_on(tmp_path):
    said = []  # (when, line)
    supervisor = Supervisor({"flaky": [PY, "-c", "raise SystemExit(3)"], "steady": SLEEPER}, cwd=tmp_path,
                            status_path=tmp_path / "status.json", say=lambda line: said.append((time.monotonic(), line)),
                            first_delay=0.1, max_delay=0.4, stable_after=30)
    supervisor.start_all()
    steady_pid = supervisor.children[1].proc.pid
    try:
        while sum(line.startswith("started flaky") for _, line in said) < 5:
            supervisor.poll()
            time.sleep(0.01)
        status = json.loads((tmp_path / "status.json").read_text())
    finally:
        supervisor.stop_all()
    deaths = [(when, float(line.split("restarting in ")[1].split()[0])) for when, line in said
              if line.startswith("flaky exited with code 3")]
    starts = [when for when, line in said if line.startswith("started flaky")]
    assert [delay for _, delay in deaths[:4]] == [0.1, 0.2, 0.4, 0.4]  # doubling, capped
    for (died, delay), restarted in zip(deaths, starts[1:]):
        assert restarted - died >= delay
    assert supervisor.children[1].restarts == 0 and steady_pid == status["parts"]["steady"]["pid"]
    assert status["parts"]["steady"]["up"] and status["parts"]["flaky"]["restarts"] >= 3
    assert not alive(steady_pid) and not (tmp_path / "status.json").exists()


def test_stop_ends_children_and_grandchildren_that_ignore_sigterm_within_the_bound(tmp_path):
    stubborn = textwrap.dedent(f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                       "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        open({str(tmp_path / 'grandchild')!r}, "w").write(str(grandchild.pid))
        time.sleep(60)
    """)
    said = []
    supervisor = Supervisor({"stubborn": [PY, "-c", stubborn], "polite": SLEEPER}, cwd=tmp_path, say=said.append,
                            stop_seconds=1)
    supervisor.start_all()
    grandchild = int(wait_for(lambda: (tmp_path / "grandchild").exists() and (tmp_path / "grandchild").read_text(),
                              10, "the grandchild did not start"))
    pids = [c.proc.pid for c in supervisor.children] + [grandchild]
    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 3
    wait_for(lambda: not any(alive(pid) for pid in pids), 2, "a process survived the stop")
    assert "stubborn did not stop within 1 s; killing its process group" in said
    assert not any("polite did not stop" in line for line in said)


def test_children_die_with_a_killed_supervisor(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from apps.dicom.supervisor import Supervisor
        supervisor = Supervisor({{"child": {SLEEPER!r}}}, cwd={str(tmp_path)!r}, say=lambda line: None)
        supervisor.start_all()
        print(supervisor.children[0].proc.pid, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    assert alive(child)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not alive(child), 5, "the child outlived its supervisor")


def test_healthz_names_the_part_that_is_down_and_says_ok_when_all_are_up(client, db, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    assert client.get("/healthz").json() == {"status": "ok"}  # no supervisor: the web alone
    supervisor = Supervisor({"receiver": SLEEPER, "workers": SLEEPER}, cwd=tmp_path,
                            status_path=tmp_path / "portal-status.json", say=lambda line: None, first_delay=60)
    supervisor.start_all()
    try:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "parts": {"receiver": "up", "workers": "up"}}
        supervisor.children[0].proc.kill()
        supervisor.children[0].proc.wait()
        supervisor.poll()
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "down" and body["down"] == ["receiver"]
        assert body["parts"] == {"receiver": "down", "workers": "up"}
        assert body["message"].startswith("receiver is down (exited with code -9 after 0 s; restarting in 30 s)")
    finally:
        supervisor.stop_all()
    status = tmp_path / "portal-status.json"
    status.write_text(json.dumps({"supervisor": 2 ** 22 + 1, "parts": {"receiver": {"up": False}}}))
    assert client.get("/healthz").json() == {"status": "ok"}, "a file left by a portal that is gone"
