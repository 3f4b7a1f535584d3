"""A portal receiver for retrieval tests: the real staging writer and policy of `manage.py receive`, in-process,
declared in Orthanc as a C-MOVE destination, with settings pointing the portal at it."""
import pytest

from apps.dicom.peers import LocalAE
from apps.dicom.staging import AnsweredWrites, MoveStaging
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.retrieval.receiving import ReceiverPolicy, staging_writer
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders, unused_port


class Receiver:
    """`drop_every`: a faulty receiver that answers success but loses every n-th instance."""

    def __init__(self, staging: MoveStaging, ae_title: str):
        self.writes = AnsweredWrites()  # as `manage.py receive` writes
        self.write = staging_writer(staging, ReceiverPolicy(ae_title), self.writes)
        self.drop_every = 0
        self.seen = 0

    def __call__(self, instance) -> int:
        self.seen += 1
        if self.drop_every and self.seen % self.drop_every == 0:
            return 0x0000
        return self.write(instance)


@pytest.fixture
def portal(settings, tmp_path, orthanc):
    """Our receiver in-process: the Storage SCP of `manage.py receive` with its staging writer and policy."""
    ae_title, port = "PORTALTEST", unused_port()
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = ae_title, port
    own_data_folders(settings, tmp_path)
    receiver = Receiver(MoveStaging(settings.STAGING_DIR), ae_title)
    orthanc.add_modality("PORTALTEST", ae_title, port)
    with LeanStorageSCP(LocalAE(ae_title=ae_title, port=port), receiver):
        yield receiver
    receiver.writes.close()


@pytest.fixture
def orthanc_servers(db, orthanc):
    """One Orthanc under two names: A retrieves with C-MOVE, B with C-GET."""
    peer = orthanc.peer()
    common = {"ae_title": peer.ae_title, "host": peer.host, "port": peer.port, "retries": 0}
    return (DicomServer.objects.create(name="A", retrieve_method="c-move", **common),
            DicomServer.objects.create(name="B", retrieve_method="c-get", **common))
