"""The real receiver process for retrieval tests against a real PACS."""
import contextlib
import subprocess
import sys
import threading
from pathlib import Path

from tests.fixtures_common import unused_port
from tests.jobs.cluster import worker_env

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def receiver_process(settings, tmp_path, pacs, ae_title: str):
    """The real receiver process (`manage.py receive` on the test database) for `ae_title`, declared in
    `pacs` (an Orthanc fixture) as a C-MOVE destination, with settings pointing the portal at it; yields
    its port."""
    port = unused_port()
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = ae_title, port
    settings.STAGING_DIR, settings.DOWNLOADS_DIR = tmp_path / "staging", tmp_path / "downloads"
    settings.QUARANTINE_DIR = tmp_path / "quarantine"
    pacs.add_modality(ae_title, ae_title, port)
    env = worker_env(DATA_DIR=tmp_path / "data", STAGING_DIR=settings.STAGING_DIR, DICOM_AE_TITLE=ae_title,
                     DICOM_PORT=port)
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "receive"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith(f"Receiver {ae_title}"):
            break
    else:
        raise AssertionError("receiver did not start")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
