"""Associations kept open between the requests of a batch (apps/dicom/reuse.py), against an in-process
Verification SCP that counts the connections it accepted."""
import time

import pytest

from apps.dicom import dimse, reuse
from apps.dicom.errors import DimseFailure
from apps.dicom.peers import LocalAE, RemoteAE
from tests.jobs.peers import RecordingEchoSCP

LOCAL = LocalAE(ae_title="REUSETEST")


@pytest.fixture
def scp():
    recorder = RecordingEchoSCP()
    yield recorder
    recorder.shutdown()


def peer(scp) -> RemoteAE:
    return RemoteAE(ae_title="RECORDER", host="127.0.0.1", port=scp.port, name="REC", query_timeout=5.0)


def settle(scp, open_now):
    deadline = time.monotonic() + 5
    while scp.open_now != open_now and time.monotonic() < deadline:
        time.sleep(0.02)
    return scp.open_now


def test_requests_in_a_batch_share_one_association_and_it_is_released_at_the_end(scp):
    with reuse.reusing_associations() as pool:
        for _ in range(5):
            dimse.echo(peer(scp), LOCAL)
        assert (pool.opened, pool.reused) == (1, 4)
        assert scp.opened == 1
    assert settle(scp, 0) == 0, "the pooled association is released when the batch ends"
    for _ in range(2):
        dimse.echo(peer(scp), LOCAL)
    assert scp.opened == 3, "outside a batch every request opens its own association"


def test_an_application_error_keeps_the_association_but_a_dicom_error_aborts_it(scp):
    with reuse.reusing_associations() as pool:
        with pytest.raises(LookupError):
            with dimse.associate(peer(scp), LOCAL, purpose="query") as assoc:
                assoc.echo()
                raise LookupError("no study matches this row")  # the row failed, the association did not
        with pytest.raises(DimseFailure):
            with dimse.associate(peer(scp), LOCAL, purpose="query") as assoc:
                assert pool.reused == 1
                raise DimseFailure("the PACS refused")
        dimse.echo(peer(scp), LOCAL)  # the aborted one is gone: a new association
        dimse.echo(peer(scp), LOCAL)
        assert (pool.opened, pool.reused) == (2, 2)
    assert scp.opened == 2


def test_a_new_connection_to_the_peer_closes_the_idle_association_first(scp):
    with reuse.reusing_associations():
        dimse.echo(peer(scp), LOCAL)
        assert settle(scp, 1) == 1
        with dimse.associate(peer(scp), LOCAL, purpose="query") as assoc:  # another purpose: a new association
            assoc.echo()
            assert settle(scp, 1) == 1, "the idle echo association was closed before this one opened"
        assert scp.most_open == 1


def test_an_idle_association_older_than_the_limit_is_not_reused(scp):
    with reuse.reusing_associations(idle_seconds=0.05) as pool:
        dimse.echo(peer(scp), LOCAL)
        time.sleep(0.1)
        dimse.echo(peer(scp), LOCAL)
        assert (pool.opened, pool.reused) == (2, 0)


def test_an_association_older_than_its_age_limit_is_replaced_even_when_busy(scp):
    with reuse.reusing_associations(idle_seconds=10, max_age_seconds=0.2) as pool:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            dimse.echo(peer(scp), LOCAL)
            time.sleep(0.02)
        assert pool.opened >= 2 and pool.reused > pool.opened, (pool.opened, pool.reused)
    assert settle(scp, 0) == 0
