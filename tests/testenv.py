"""Loaded with `-p tests.testenv` (pytest.ini) before pytest-django reads the settings: the test
environment is a development one, with its data in a throw-away folder."""
import os
import shutil
import tempfile
from urllib.parse import urlsplit

# The throw-away folders this process made for the run (xdist's workers inherit the controller's): removed
# when the run passed, kept to look into when it did not. A run left some 3 GB behind (Orthancs' storage,
# staged and retrieved studies), which filled the disk of a machine that runs the suite all day.
MADE_HERE: list[str] = []


def throwaway(prefix: str) -> str:
    MADE_HERE.append(tempfile.mkdtemp(prefix=prefix))
    return MADE_HERE[-1]


os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-only-secret")
if "DATA_DIR" not in os.environ:
    os.environ["DATA_DIR"] = throwaway("pacsportal-test-")
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) and "PYTHONPYCACHEPREFIX" not in os.environ:
    # The suite starts a few hundred Python processes (workers, receivers, the portal's parts), each
    # importing the whole portal: without written bytecode each compiled every module of the portal again,
    # ~0.6 s of CPU a process. Bytecode goes to a folder of this run, not into the source tree.
    os.environ["PYTHONPYCACHEPREFIX"] = throwaway("pacsportal-pycache-")
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
        config.option.basetemp = throwaway("pacsportal-pytest-")


PASSED: list[bool] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    PASSED.append(exitstatus == 0)


def pytest_unconfigure(config):
    # (after every fixture's teardown: the Orthancs whose storage is in there have stopped)
    if PASSED and all(PASSED):
        for folder in MADE_HERE:
            shutil.rmtree(folder, ignore_errors=True)
