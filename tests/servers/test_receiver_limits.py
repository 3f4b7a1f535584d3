"""`manage.py receive` under attack: 200 connections announcing large PDUs (from the AE title of a configured
PACS: AE titles are no secret) cost the real receiver process little memory, the association limit refuses
the surplus as "local limit exceeded", the PDU deadline ends the stalled peers, and a study from a real
Orthanc is received completely afterwards."""
import socket
import subprocess
import time

import pytest

from apps.dicom import dimse
from apps.dicom.peers import LocalAE
from apps.dicom.scu import c_move
from apps.dicom.staging import MoveStaging
from tests.fixtures_common import unused_port
from tests.jobs.cluster import wait_for
from tests.receiver_process import start_receive
from tests.retrieval.keys import live_move_key
from tests.servers.hostile import attack, rss_bytes

RSS_GROWTH_BOUND = 40 * 1024 * 1024  # 200 peers announcing 4 MB / 1 MB took the old receiver from ~110 MB to ~560 MB
MAX_ASSOCIATIONS, PDU_TIMEOUT = 20, 2.0

pytestmark = pytest.mark.django_db(transaction=True)  # the receiver reads servers and move keys from it


def unread_by_receiver(client: socket.socket, port: int) -> int:
    """Bytes `client` sent that the receiver on `port` has not read yet: the receive queue of the
    receiver's end of the connection (/proc/net/tcp: local and remote address:port, state, tx:rx queue)."""
    client_port = client.getsockname()[1]
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == client_port:
            return int(fields[4].split(":")[1], 16)
    return 0  # closed already


def start_receiver(tmp_path, ae_title, port, **settings) -> subprocess.Popen:
    return start_receive(ae_title, DATA_DIR=tmp_path / "data", STAGING_DIR=tmp_path / "staging", DICOM_PORT=port,
                         **settings)


@pytest.fixture
def limited_receiver(tmp_path, orthanc, orthanc_dataset):
    ae_title, port = "LIMITED", unused_port()
    orthanc.add_modality(ae_title, ae_title, port)
    live_move_key(orthanc, orthanc_dataset["studies"][0]["StudyInstanceUID"], 99)
    # One process, so what is over the limit is refused at once: with several, a process at its share
    # first leaves a connection to the others for up to a second (test_receiver_processes.py).
    proc = start_receiver(tmp_path, ae_title, port, RECEIVER_MAX_ASSOCIATIONS=MAX_ASSOCIATIONS,
                          RECEIVER_PDU_TIMEOUT=PDU_TIMEOUT, RECEIVER_PROCESSES=1)
    yield proc, ae_title, port, MoveStaging(tmp_path / "staging")
    proc.kill()
    proc.wait()


def test_200_connections_announcing_large_pdus_cost_little_and_a_study_arrives_afterwards(
        limited_receiver, orthanc, orthanc_dataset):
    proc, ae_title, port, staging = limited_receiver
    assert dimse.echo(orthanc.peer(ae_title=ae_title, port=port), LocalAE(ae_title=orthanc.aet)) > 0  # warm
    before = rss_bytes(proc.pid)

    hostile = attack("127.0.0.1", port, ae_title, calling_ae=orthanc.aet, large_p_data=100, large_requests=100)
    try:
        # the receiver has read what each associated peer sent (where a buffer would be allocated) when
        # nothing of it waits in the receiving end's socket queue
        wait_for(lambda: all(unread_by_receiver(s, port) == 0 for s in hostile.sockets[:hostile.associated]), 10,
                 "the receiver to read what each associated peer sent")
        during = rss_bytes(proc.pid)
        assert hostile.associated == MAX_ASSOCIATIONS
        assert hostile.refusals == [(2, 3, 2)] * (100 - MAX_ASSOCIATIONS), "transient, local limit exceeded"
        assert hostile.stalled_requests == 100
        print(f"receiver RSS {before / 2**20:.0f} MB before, {during / 2**20:.0f} MB with 200 hostile connections")
        assert during - before < RSS_GROWTH_BOUND
        started = time.monotonic()
        assert hostile.all_cut(timeout=3 * PDU_TIMEOUT + 5), "a stalled peer kept its connection"
        print(f"stalled peers cut within {time.monotonic() - started:.1f} s")
    finally:
        hostile.close()
    assert proc.poll() is None

    study = orthanc_dataset["studies"][0]
    expected = orthanc.study_instances(study["StudyInstanceUID"])
    result = c_move(orthanc.peer(), LocalAE(ae_title=ae_title), {"StudyInstanceUID": study["StudyInstanceUID"]},
                        ae_title, message_id=99)
    assert result.completed == len(expected) and result.failed == 0
    assert {p.stem for p in staging.instances(staging.folder(ae_title, 99))} == expected
