"""Shared fixtures. The real-PACS rig (Orthanc on free loopback ports) lives in tests/pacs.py."""

pytest_plugins = ["tests.fixtures_common"]

import sqlite3  # noqa: E402
from contextlib import closing  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.pacs import Orthanc  # noqa: E402

# The generated data loaded into the session Orthanc: 3 patients x 2 studies x 1 series x 5 instances,
# 64x64, modalities cycling CT, MR, US, study dates 2021-03-01 + n days (n = 0..5, in patient order).
ORTHANC_DATASET = dict(patients=3, studies=2, series=1, instances=5, rows=64, cols=64,
                       modalities=("CT", "MR", "US"), seed=7, id_prefix="ORT", first_date="2021-03-01")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """One real Orthanc for the session, holding ORTHANC_DATASET. Treat its data as read-only (store
    into `empty_orthanc`); C-MOVE destinations may be added with orthanc.add_modality()."""
    from apps.dicom.demo.synthetic import write_dataset

    root = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(root / "server").start()
    try:
        server.dataset = write_dataset(root / "dataset", **ORTHANC_DATASET)
        server.dataset_dir = root / "dataset"
        server.load(server.dataset_dir)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def orthanc_dataset(orthanc) -> dict:
    """The manifest of the data in `orthanc` (apps.dicom.demo.synthetic.write_dataset's return value)."""
    return orthanc.dataset


@pytest.fixture(scope="session")
def spare_orthanc(tmp_path_factory):
    server = Orthanc(tmp_path_factory.mktemp("orthanc-spare"), aet="SPARE").start()
    yield server
    server.stop()


@pytest.fixture
def empty_orthanc(spare_orthanc):
    """A second real Orthanc (AE title SPARE), emptied before each test that stores into it."""
    spare_orthanc.delete_all()
    return spare_orthanc


@pytest.fixture
def broker(db):
    """The django-q2 broker Q_BROKER configures (the ORM, or Redis in `make test-scaleout`), its queue
    emptied first: the database is reset between tests, a Redis server is not."""
    from django_q.brokers import get_broker

    queue = get_broker()
    queue.purge_queue()
    return queue


MIGRATED: dict[str, Path] = {}  # "sqlite": the copy django_db_setup made


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, tmp_path_factory):
    """pytest-django's test database, and on SQLite a copy of it as the migrations left it, before any
    test wrote to it (`migrated_sqlite`); on PostgreSQL, no session of another process left on it at the end."""
    from django.db import connection

    if connection.vendor == "sqlite":
        copy = tmp_path_factory.mktemp("migrated") / "migrated.sqlite3"
        with django_db_blocker.unblock(), closing(sqlite3.connect(copy)) as target:
            connection.ensure_connection()
            connection.connection.backup(target)
        MIGRATED["sqlite"] = copy
    yield
    if connection.vendor == "postgresql":
        # Processes a test started (workers, a cluster) may still be closing their sessions as the run ends,
        # and PostgreSQL then refuses to drop the test database ("being accessed by other users"): end them.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def migrated_sqlite(django_db_setup) -> Path | None:
    """A SQLite file as `manage.py migrate` leaves a new one (tables, content types, permissions, the
    migrations' own rows), to copy where a test needs a migrated database of its own; None on a
    database server. The migrations take 10-20 s of CPU: once per test run, not again per copy."""
    return MIGRATED.get("sqlite")
