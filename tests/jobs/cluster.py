"""Start real worker processes (`manage.py qcluster`, `manage.py shell`) on the test database file."""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings


def worker_env(**extra) -> dict:
    test_db = settings.DATABASES["default"]["NAME"]  # pytest-django points this at the test database
    assert str(test_db).endswith(".sqlite3"), "worker tests need the file-backed SQLite test database"
    return {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{test_db}", "LOG_LEVEL": "INFO",
            "Q_LOG_LEVEL": "INFO", **{k: str(v) for k, v in extra.items()}}


class QCluster:
    """`manage.py qcluster` in its own process group, so a SIGKILL takes sentinel and workers at once."""

    def __init__(self, log_path, **env):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR,
                                     env=worker_env(**env), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # the cluster's own process: it stops its sentinel and workers in order
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
