"""Shared fixtures. The real-PACS rig (Orthanc on free loopback ports) lives in tests/pacs.py."""

pytest_plugins = ["tests.fixtures_common"]

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
