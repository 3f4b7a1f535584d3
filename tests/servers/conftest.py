"""A DicomServer in front of the emptied spare Orthanc, with its DICOMweb URL: where the storing tests store."""
import pytest

from apps.servers.models import DicomServer
from tests.fixtures_common import trust_url_host


@pytest.fixture
def server(db, empty_orthanc, settings):
    peer = empty_orthanc.peer()
    return DicomServer.objects.create(name="STORE", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0,
                                      dicomweb_url=trust_url_host(settings, empty_orthanc.dicomweb().base_url))
