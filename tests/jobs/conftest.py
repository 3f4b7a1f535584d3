import pytest

from apps.servers.intake import create_echo_job
from apps.servers.models import DicomServer, EchoJob
from tests.jobs.peers import RecordingEchoSCP


@pytest.fixture
def echo_scp():
    scp = RecordingEchoSCP()
    yield scp
    scp.shutdown()


def make_server(name: str, port: int, **fields) -> DicomServer:
    return DicomServer.objects.create(name=name, ae_title=name, host="127.0.0.1", port=port, **fields)


def make_echo_job(servers, user=None) -> EchoJob:
    """An EchoJob over the given servers (a server may appear several times: one item each)."""
    return create_echo_job(servers, user=user, description="test")
