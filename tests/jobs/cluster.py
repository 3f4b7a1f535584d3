"""Start real worker processes (`manage.py qcluster`, `manage.py shell`) on the test database (the
SQLite test file, or pytest-django's test_ database on PostgreSQL) and the configured broker."""
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings

from tests.fixtures_common import DATA_FOLDERS


def workers_database_url() -> str:
    """DATABASE_URL of the database this test run uses (pytest-django has renamed it in settings)."""
    test_db = settings.DATABASES["default"]
    if test_db["ENGINE"] == "django.db.backends.sqlite3":
        # a file (pytest-xdist adds its worker's suffix to the name: test-<pid>.sqlite3_gw0), never in memory
        name = str(test_db["NAME"])
        assert name != ":memory:" and "mode=memory" not in name, "worker tests need the file-backed SQLite test database"
        return f"sqlite:///{test_db['NAME']}"
    # A server database: the URL the run was given, with the test database's name in place of the real one.
    return urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{test_db['NAME']}").geturl()


def worker_env(**extra) -> dict:
    """The test's environment for a process it starts: its database, and its data folders as the test's settings
    place them (a test with folders of its own, own_data_folders, gives them to its processes too)."""
    folders = {name: str(getattr(settings, name)) for name in DATA_FOLDERS}
    return {**os.environ, "DEBUG": "1", "DATABASE_URL": workers_database_url(), "LOG_LEVEL": "INFO",
            "Q_LOG_LEVEL": "INFO", **folders, **{k: str(v) for k, v in extra.items()}}


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


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
