"""Hostile files on disk handed to the one way of storing instances on a server (apps/servers/storing.py):
a FIFO or a device among the files neither hangs the send nor stops the others, and is named with why it
was not sent; a file swapped for another between its header being read and its sending is not sent as
the instance the header promised.

The receiver (`manage.py receive`, the real process on the test database) under peers that only know the
PACS's AE title: idle associations and connections sending two bytes are cut within seconds, one address
cannot take every association slot, a saturated receiver shows on /healthz and in the row that failed for
it, and refusals are logged once per peer address per minute, however many there are. Plus the servers
API's check of the addresses a clustered PACS stores from."""

import os
import shutil
import socket
import time

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from apps.dicom import files
from apps.dicom.demo.synthetic import write_dataset
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers import storing
from apps.servers.models import DicomServer
from tests.fixtures_common import unused_port
from tests.jobs.cluster import wait_for
from tests.receiver_process import receiver_process, start_receive, stop
from tests.retrieval.keys import live_move_key
from tests.retrieval.test_integrity import run

pytestmark = pytest.mark.django_db
with_receiver = pytest.mark.django_db(transaction=True)  # the receiver process reads the test database
METHODS = [storing.C_STORE, storing.STOW_RS]


@pytest.fixture
def good(tmp_path):
    write_dataset(tmp_path / "in", patients=1, studies=1, series=1, instances=3, rows=32, cols=32,
                  modalities=("CT",), seed=41, id_prefix="ATK")
    return sorted((tmp_path / "in").rglob("*.dcm"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_fifo_and_a_device_among_the_files_are_refused_without_blocking(server, empty_orthanc, good, tmp_path,
                                                                          method):
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer that never comes
    device = tmp_path / "zero.dcm"
    os.symlink("/dev/zero", device)  # reading it would never end
    report = storing.store(server, [fifo, device, *good], method=method)
    failed = dict(report.failed)
    assert set(failed) == {str(fifo), str(device)} and report.invalid == report.failed
    assert all("not a regular file" in reason for reason in failed.values())
    assert sorted(o.path for o in report.stored) == sorted(str(p) for p in good)
    assert empty_orthanc.instances() == {files.read_meta(p).sop_instance_uid for p in good}


@pytest.mark.parametrize("method", METHODS)
def test_a_file_swapped_after_its_header_was_read_is_not_sent_as_what_the_header_said(server, empty_orthanc, good,
                                                                                      tmp_path, method):
    listed = [(p, files.read_meta(p)) for p in good]
    other = tmp_path / "other"
    write_dataset(other, patients=1, studies=1, series=1, instances=1, rows=64, cols=64, modalities=("MR",),
                  seed=42, id_prefix="SWAP")
    shutil.copyfile(next(other.rglob("*.dcm")), good[0])  # another patient's instance under the same name
    report = storing.store(server, listed, method=method)
    stored = {o.sop_instance_uid for o in report.stored}
    assert listed[0][1].sop_instance_uid not in stored
    assert [path for path, _ in report.failed] == [str(good[0])] and "changed" in report.failed[0][1]
    assert empty_orthanc.instances() == {info.sop_instance_uid for _, info in listed[1:]}


@pytest.mark.parametrize("method", METHODS)
def test_a_file_swapped_for_another_of_the_same_size_is_caught_too(server, empty_orthanc, good, method):
    listed = [(p, files.read_meta(p)) for p in good]
    ds = pydicom.dcmread(good[0])
    uid = ds.SOPInstanceUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid[:-1] + ("1" if uid[-1] != "1" else "2")
    size = good[0].stat().st_size
    ds.save_as(good[0], enforce_file_format=True)  # another instance, the same size
    assert good[0].stat().st_size == size
    report = storing.store(server, listed, method=method)
    assert [path for path, _ in report.failed] == [str(good[0])] and "changed" in report.failed[0][1]
    assert sorted(o.path for o in report.stored) == [str(good[1]), str(good[2])]
    assert uid not in empty_orthanc.instances() and len(empty_orthanc.instances()) == 2

PEER, OTHER_PEER = "127.0.0.7", "127.0.0.8"  # addresses that are no configured server's (Orthanc is 127.0.0.1)


def associate(port: int, called: str, calling: str, address: str = "127.0.0.1", contexts=(Verification,)):
    ae = AE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context)
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=(address, 0))


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the receiver closed `sock` (non-blocking), having read past what it sent first (an A-ABORT)."""
    try:
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


@with_receiver
def test_idle_associations_and_two_byte_connections_are_cut_within_seconds_and_one_address_gets_few_slots(
        tmp_path, orthanc, orthanc_dataset):
    ae_title, port = "QUIETRCV", unused_port()
    orthanc.add_modality(ae_title, ae_title, port)
    study = orthanc_dataset["studies"][0]
    live_move_key(orthanc, study["StudyInstanceUID"], 321)  # Orthanc (127.0.0.1) is a configured server
    proc = start_receive(ae_title, DATA_DIR=tmp_path / "data", STAGING_DIR=tmp_path / "staging", DICOM_PORT=port,
                         RECEIVER_PROCESSES=1, RECEIVER_MAX_ASSOCIATIONS=8, RECEIVER_PEER_ASSOCIATIONS=2,
                         RECEIVER_QUIET_TIMEOUT=1)
    held, raw = [], []
    try:
        # A stranger calling as the PACS: two associations, not the eight slots; they send nothing
        held = [associate(port, ae_title, orthanc.aet, PEER) for _ in range(3)]
        assert [a.is_established for a in held] == [True, True, False], "an address gets its share, not all"
        started = time.monotonic()
        for _ in range(30):  # connections that send two bytes of a PDU and wait
            sock = socket.create_connection(("127.0.0.1", port), source_address=(PEER, 0))
            sock.sendall(b"\x01\x00")
            sock.setblocking(False)
            raw.append(sock)
        # the PACS's own address still gets associations meanwhile
        mine = [associate(port, ae_title, orthanc.aet) for _ in range(4)]
        assert all(a.is_established for a in mine), "the stranger's connections took the PACS's slots"
        for a in mine:
            a.release()
        wait_for(lambda: all(not a.is_established for a in held[:2]), 5, "the idle associations to be cut")
        wait_for(lambda: all(closed_by_peer(s) for s in raw), 5, "the two-byte connections to be cut")
        took = time.monotonic() - started
        assert took < 4, f"cut after {took:.1f} s"
    finally:
        for sock in raw:
            sock.close()
        for a in held:
            if a.is_established:
                a.release()
        stop(proc)


@pytest.fixture
def orth(db, orthanc):
    peer = orthanc.peer()
    return DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0)


@with_receiver
def test_a_full_receiver_shows_on_healthz_and_the_row_it_failed_says_so_not_blaming_the_pacs(
        settings, tmp_path, orthanc, orthanc_dataset, orth, client):
    with receiver_process(settings, tmp_path, orthanc, "FULLRCV", RECEIVER_PROCESSES=1,
                          RECEIVER_MAX_ASSOCIATIONS=1) as port:
        assert client.get("/healthz").status_code == 200
        holder = associate(port, "FULLRCV", orth.ae_title)  # from the PACS's own address: its one slot
        try:
            assert holder.is_established
            refused = associate(port, "FULLRCV", orth.ae_title)
            assert refused.is_rejected
            health = wait_for(lambda: (lambda r: r if r.status_code == 503 else None)(client.get("/healthz")), 5,
                              "/healthz to report the saturated receiver")
            assert health.json()["parts"]["receiver"] == "saturated" and health.json()["down"] == ["receiver"]
            assert "RECEIVER_MAX_ASSOCIATIONS" in health.json()["message"]

            study = orthanc_dataset["studies"][0]
            job = RetrievalJob.objects.create(source_name="full")
            RetrievalItem.objects.create(job=job, line=1, dicom_server=orth, server_name=orth.name,
                                         study_instance_uid=study["StudyInstanceUID"])
            item = run(job).items.get()
        finally:
            holder.release()
    assert item.status == "failed"
    assert "the portal's receiver FULLRCV" in item.error and "was full" in item.error, item.error
    assert "The PACS is not to blame" in item.error


@with_receiver
def test_refusals_are_logged_once_per_peer_per_minute_and_a_cut_off_once(tmp_path, orthanc, orthanc_dataset):
    ae_title, port = "NOISYRCV", unused_port()
    ds = pydicom.dcmread(next(orthanc.dataset_dir.rglob("*.dcm")))
    proc = start_receive(ae_title, DATA_DIR=tmp_path / "data", STAGING_DIR=tmp_path / "staging", DICOM_PORT=port,
                         RECEIVER_PROCESSES=1, RECEIVER_ALLOWED_AE_TITLES="NOISY", RECEIVER_REFUSALS_ALLOWED=40)
    try:
        def stores(address: str, count: int) -> list:
            assoc = associate(port, ae_title, "NOISY", address, contexts=[str(ds.SOPClassUID)])
            answers = []
            try:
                for n in range(count):
                    try:
                        rsp = assoc.send_c_store(ds, msg_id=n + 1)
                    except RuntimeError:
                        break
                    if "Status" not in rsp:
                        break
                    answers.append(int(rsp.Status))
            finally:
                if assoc.is_established:
                    assoc.release()
            return answers

        assert stores(PEER, 30) == [0x0124] * 30  # unsolicited: "not authorized", each
        assert stores(PEER, 30) == [0x0124] * 11, "the 41st refusal cut the peer off"
        assert all(associate(port, ae_title, "NOISY", PEER).is_rejected for _ in range(5))
        assert stores(OTHER_PEER, 3) == [0x0124] * 3
        # the last line for OTHER_PEER comes after everything logged for PEER (one process, in order)
        wait_for(lambda: any(OTHER_PEER in line for line in proc.output), 10, "the other peer's refusal logged")
    finally:
        stop(proc)
    lines = [line for line in proc.output if PEER in line and " WARNING " in line]
    assert len([line for line in lines if "refused an instance from NOISY" in line]) == 1, lines
    assert len([line for line in lines if "cut off the peer" in line]) == 1, lines
    assert len(lines) == 2, f"71 refusals and 5 rejected associations from {PEER} logged as: {lines}"
    assert not [line for line in proc.output if "refused a peer" in line and PEER in line]


@pytest.mark.parametrize("store_from, words", [
    ("ORTHANC2@10.0.0.6", "must be a list"),
    (["10.0.0.6"], "must be AE_TITLE@host"),
    (["BAD\\AE@10.0.0.6"], "Store-from entry 'BAD"),
    (["NODE@http://x"], "has a scheme"),
    ([f"N{n}@10.0.0.{n}" for n in range(40)], "at most 32"),
])
def test_store_from_takes_only_ae_title_at_host_entries_and_names_the_bad_one(api, store_from, words):
    body = {"name": "CL", "ae_title": "ORTHANC", "host": "10.0.0.5", "port": 4242, "store_from": store_from}
    answer = api.post("/api/servers/", body, format="json")
    assert answer.status_code == 400 and words in str(answer.json()["store_from"]), answer.content
    assert not DicomServer.objects.exists()
    good = api.post("/api/servers/", {**body, "store_from": ["ORTHANC2@10.0.0.6", "ORTHANC@pacs-b.local"]},
                    format="json")
    assert good.status_code == 201 and good.json()["store_from"] == ["ORTHANC2@10.0.0.6", "ORTHANC@pacs-b.local"]
    assert DicomServer.objects.get(name="CL").store_sources() == [
        ("ORTHANC", "10.0.0.5"), ("ORTHANC2", "10.0.0.6"), ("ORTHANC", "pacs-b.local")]
    DicomServer.objects.filter(name="CL").update(store_from=["junk", "N2@10.0.0.7", 5])  # past the validation
    assert DicomServer.objects.get(name="CL").store_sources() == [("ORTHANC", "10.0.0.5"), ("N2", "10.0.0.7")]
