"""Loaded with `-p tests.testenv` (pytest.ini) before pytest-django reads the settings: the test
environment is a development one, with its data in a throw-away folder."""
import os
import tempfile
from urllib.parse import urlsplit

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-only-secret")
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="pacsportal-test-"))
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) and "PYTHONPYCACHEPREFIX" not in os.environ:
    # The suite starts a few hundred Python processes (workers, receivers, the portal's parts), each
    # importing the whole portal: without written bytecode each compiled every module of the portal again,
    # ~0.6 s of CPU a process. Bytecode goes to a folder of this run, not into the source tree.
    os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="pacsportal-pycache-")
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    # A pytest-xdist worker inherits the controller's environment: its own DATA_DIR inside that one, so
    # workers never see each other's staging, downloads or reports (nor their SQLite test databases).
    os.environ["DATA_DIR"] = os.path.join(os.environ["DATA_DIR"], worker)
    # and its own Redis database (`make test-scaleout`), so one worker's emptied queue is never another's;
    # PostgreSQL test databases get pytest-django's worker suffix already.
    broker = urlsplit(os.environ.get("Q_BROKER", ""))
    if broker.scheme.startswith("redis"):
        os.environ["Q_BROKER"] = broker._replace(path=f"/{int(worker.removeprefix('gw')) + 1}").geturl()


import pytest  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # A private temp root per run: pytest prunes old /tmp/pytest-of-<user>/pytest-N folders, which
    # would delete a concurrently running session's Orthanc storage under it.
    if not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="pacsportal-pytest-")
