"""A DicomServer in front of the emptied spare Orthanc, with its DICOMweb URL: where the storing tests store."""
import pytest

from apps.servers.models import DicomServer


@pytest.fixture
def server(db, empty_orthanc):
    peer = empty_orthanc.peer()
    return DicomServer.objects.create(name="STORE", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                      retries=0, dicomweb_url=empty_orthanc.dicomweb().base_url)
