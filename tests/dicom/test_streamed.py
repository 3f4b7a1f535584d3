"""Large instances streamed to their staging file as they arrive (apps/dicom/wire/streamed.py): the same
bytes as a whole instance, in every transfer syntax, through the Storage SCP; and what a peer breaking off
or lying about its pixel data leaves behind (nothing). The threshold is lowered so small real files stream."""
import struct
import time

import pytest
from pynetdicom import AE, build_context

from apps.dicom import files
from apps.dicom.demo.huge import write_huge_instance
from apps.dicom.peers import LocalAE
from apps.dicom.staging import MoveStaging
from apps.dicom.wire import messages, storage_scp, streamed
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.retrieval.receiving import staging_writer
from tests.dicom.test_storage_scp import PYDICOM_FILES, REAL_FILES, associate_rq, p_data, raw_connection, store_command
from tests.pacs import dataset_part
from tests.servers.hostile import recv_pdu


@pytest.fixture
def streaming(monkeypatch):
    """Every dataset over 1 kB streams; `calls` counts the instances that did."""
    calls = []
    start = streamed.start

    def counted(*args, **kwargs):
        stream = start(*args, **kwargs)
        if stream is not None:
            calls.append(stream.instance.sop_instance_uid)
        return stream

    monkeypatch.setattr(messages.MessageAssembler, "stream_after", 1024)
    monkeypatch.setattr(storage_scp, "MAX_PDU", 1024)  # peers send datasets in many fragments
    monkeypatch.setattr(streamed, "start", counted)
    monkeypatch.setattr(streamed, "CHUNK", 4096)  # reads split PDVs, and headers split across reads
    return calls


def staged_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def send_files(port, paths, key=42):
    ae = AE(ae_title="SENDER")
    for path in paths:
        info = files.read_meta(path)
        ae.add_requested_context(info.sop_class_uid, [info.transfer_syntax_uid])
    ae.maximum_pdu_size = 16384
    assoc = ae.associate("127.0.0.1", port, ae_title="LEAN")
    assert assoc.is_established
    try:
        return [assoc.send_c_store(path, originator_aet="MOVER", originator_id=key + n).Status
                for n, path in enumerate(paths)]
    finally:
        assoc.release()


def test_real_files_in_every_transfer_syntax_stream_into_staging_byte_identical(tmp_path, streaming):
    staging = MoveStaging(tmp_path / "staging")
    paths = [PYDICOM_FILES / name for name in REAL_FILES]
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        assert send_files(server.port, paths, key=1) == [0x0000] * len(paths)  # one move each: UIDs repeat
    for n, path in enumerate(paths):
        info = files.read_meta(path)
        (kept,) = [p.read_bytes() for p in staging.folder("MOVER", n + 1).glob("*.dcm")]
        if not info.transfer_syntax_uid.endswith(".99"):  # pynetdicom deflates anew: not the file's bytes
            assert dataset_part(kept) == dataset_part(path.read_bytes()), path.name
    # native, RLE, JPEG-LS, JPEG 2000, big endian, implicit VR: streamed; no pixel data or deflated: read whole
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                 "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "examples_palette.dcm", "JPGExtended.dcm"):
        assert files.read_meta(PYDICOM_FILES / name).sop_instance_uid in streaming, name
    assert len(streaming) == 12
    assert not [p for p in staged_files(tmp_path / "staging") if p.name.endswith(".part")]


def raw_store(port, info, dataset_pieces, *, abort=False, originator=True):
    """A raw peer sending one C-STORE whose dataset is `dataset_pieces` (the last flagged last), under move
    MOVER/42 (or none: a plain C-STORE)."""
    with raw_connection(port) as sock:
        sock.sendall(associate_rq([build_context(info.sop_class_uid, [info.transfer_syntax_uid])]))
        assert recv_pdu(sock)[0] == 0x02
        command = store_command(info.sop_class_uid, info.sop_instance_uid)
        if not originator:
            command = plain_store_command(info.sop_class_uid, info.sop_instance_uid)
        sock.sendall(p_data(1, 0x03, command))
        for n, piece in enumerate(dataset_pieces):
            last = n == len(dataset_pieces) - 1 and not abort
            sock.sendall(p_data(1, 0x02 if last else 0x00, piece))
        if abort:
            sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")
            assert sock.recv(1) == b""
            return None
        return recv_pdu(sock)[1]


def plain_store_command(sop_class, sop_instance, message_id=7) -> bytes:
    def element(tag, value):
        return struct.pack("<HHL", 0, tag, len(value)) + value

    def uid(text):
        raw = text.encode()
        return raw + b"\0" if len(raw) % 2 else raw

    body = (element(0x0002, uid(sop_class)) + element(0x0100, b"\x01\x00") + element(0x0110, struct.pack("<H", message_id))
            + element(0x0700, b"\x00\x00") + element(0x0800, b"\x00\x00") + element(0x1000, uid(sop_instance)))
    return element(0x0000, struct.pack("<L", len(body))) + body


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.dcm"
    write_huge_instance(path, 3, rows=256, cols=256)
    return path


def test_a_peer_cutting_its_pixel_data_short_is_refused_and_nothing_stays_staged(tmp_path, streaming, big_file):
    staging = MoveStaging(tmp_path / "staging")
    info, data = files.read_checked(big_file)
    dataset = data[info.dataset_offset:]
    pieces = [dataset[i:i + 1000] for i in range(0, len(dataset) // 2, 1000)]  # half, then "last"
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        rsp = raw_store(server.port, info, pieces)
        assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xc0" in rsp  # (0000,0900) Status 0xC000
        assert b"truncated" in rsp
        assert streaming == [info.sop_instance_uid]  # it was streamed, not buffered
        raw_store(server.port, info, pieces, abort=True)  # and a peer aborting mid-stream
        time.sleep(0.2)
    assert staged_files(tmp_path / "staging") == []


def test_encapsulated_fragments_that_break_off_are_refused_mid_stream(tmp_path, streaming):
    staging = MoveStaging(tmp_path / "staging")
    info, data = files.read_checked(PYDICOM_FILES / "SC_rgb_rle_2frame.dcm")
    dataset = bytearray(data[info.dataset_offset:])
    end = files.header_end(dataset, info.transfer_syntax_uid)
    assert dataset[end:end + 4] == b"\xe0\x7f\x10\x00"
    broken = bytes(dataset[:end + 12]) + b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\x01\x02\x03\x04" * 1000
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        rsp = raw_store(server.port, info, [broken[i:i + 1000] for i in range(0, len(broken), 1000)])
    assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xc0" in rsp and b"encapsulated" in rsp
    assert staged_files(tmp_path / "staging") == []


def test_the_same_sop_streamed_again_with_other_bytes_goes_apart(tmp_path, streaming, big_file):
    staging = MoveStaging(tmp_path / "staging")
    info, data = files.read_checked(big_file)
    other = bytearray(data)
    other[-100] ^= 0xFF  # one pixel byte differs
    (tmp_path / "other.dcm").write_bytes(other)
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        for path in (big_file, big_file, tmp_path / "other.dcm"):
            assert send_files(server.port, [path]) == [0]
    folder = staging.folder("MOVER", 42)
    assert (folder / f"{info.sop_instance_uid}.dcm").read_bytes()[-100] == data[-100]
    (apart,) = (folder / "foreign" / "duplicate").glob("*.dcm")
    assert apart.read_bytes()[-100] == other[-100]


def test_an_instance_over_the_threshold_without_its_header_yet_is_buffered_until_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(messages.MessageAssembler, "stream_after", 10)  # the header is not in at 10 bytes
    staging = MoveStaging(tmp_path / "staging")
    path = PYDICOM_FILES / "CT_small.dcm"
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        assert send_files(server.port, [path]) == [0x0000]
    info, data = files.read_checked(path)
    kept = (staging.folder("MOVER", 42) / f"{info.sop_instance_uid}.dcm").read_bytes()
    assert dataset_part(kept) == dataset_part(data)


def test_an_instance_of_several_megabytes_read_whole_arrives_intact(tmp_path, monkeypatch, big_file):
    """The dataset buffer grows past its first megabyte (it once failed there: EFAULT on a shared map)."""
    monkeypatch.setattr(messages.MessageAssembler, "stream_after", 1 << 40)
    staging = MoveStaging(tmp_path / "staging")
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), staging_writer(staging)) as server:
        assert send_files(server.port, [big_file]) == [0x0000]
    info, data = files.read_checked(big_file)
    kept = (staging.folder("MOVER", 42) / f"{info.sop_instance_uid}.dcm").read_bytes()
    assert dataset_part(kept) == dataset_part(data)


class KeepsPlainStores:
    """A receiver policy that keeps plain C-STOREs (no move) under the unsolicited quota."""

    def refusal(self, instance):
        return ""


def test_a_streamed_plain_store_over_the_unsolicited_quota_is_refused_and_gives_its_share_back(
        tmp_path, streaming, big_file, settings):
    settings.RECEIVER_KEEP_UNSOLICITED_MB = 1  # the 3 MB instance passes it as it streams
    staging = MoveStaging(tmp_path / "staging")
    writer = staging_writer(staging, KeepsPlainStores())
    info, data = files.read_checked(big_file)
    dataset = data[info.dataset_offset:]
    with LeanStorageSCP(LocalAE(ae_title="LEAN", port=0), writer) as server:
        rsp = raw_store(server.port, info, [dataset[i:i + 1000] for i in range(0, len(dataset), 1000)],
                        originator=False)
        assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xa7" in rsp and b"quota" in rsp  # 0xA700
        assert streaming == [info.sop_instance_uid]
        assert writer.quota._used == 0  # what it took is given back
    assert staged_files(tmp_path / "staging") == []
