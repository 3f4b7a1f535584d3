"""The real receiver (`manage.py receive`) as its own process on the test database, for tests against a real
PACS: it reads servers and move keys from that database, as in production."""
import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.fixtures_common import own_data_folders, unused_port
from tests.jobs.cluster import worker_env

ROOT = Path(__file__).resolve().parents[1]
# How long a receiver may take to start or stop before a test says it did not: a limit for a hung one,
# not a speed check. It starts in 3-8 s on an idle 2-core machine (a supervising process and two serving
# ones by default, each starting Django), but a fixed 30 s failed tests at load 10 and more. One that
# exits while starting fails the test at once.
READY_LIMIT = 180
RUNNING: dict[int, subprocess.Popen] = {}  # port -> the receiver process serving it (receiver_process)


def start_receive(ae_title: str, *args: str, **env) -> subprocess.Popen:
    """`manage.py receive [args]` with `env` added to the test environment (DICOM_AE_TITLE is `ae_title`),
    returned once it listens. Its output is read all along (a pipe nobody reads would block it)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "receive", *args],
                            env=worker_env(DICOM_AE_TITLE=ae_title, **env), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen, ready = [], threading.Event()

    def read():
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(f"Receiver {ae_title} on"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    proc.output = seen  # what it said so far, a line an item
    deadline = time.monotonic() + READY_LIMIT
    while not ready.wait(0.1):
        assert proc.poll() is None and time.monotonic() < deadline, "receiver did not start:\n" + "".join(seen)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=READY_LIMIT)


@contextlib.contextmanager
def receiver_process(settings, tmp_path, pacs, ae_title: str, **env):
    """The receiver for `ae_title` (with `env` added to its environment), declared in `pacs` (an Orthanc
    fixture) as a C-MOVE destination, with settings pointing the portal at it; yields its port."""
    port = unused_port()
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = ae_title, port
    own_data_folders(settings, tmp_path)
    pacs.add_modality(ae_title, ae_title, port)
    proc = start_receive(ae_title, DATA_DIR=settings.DATA_DIR, STAGING_DIR=settings.STAGING_DIR, DICOM_PORT=port,
                         **env)
    RUNNING[port] = proc
    try:
        yield port
    finally:
        RUNNING.pop(port, None)
        stop(proc)
