"""A batch's zip produced while it is read: identical bytes for identical cases, its length known
before a byte is read, any range of it produced on its own (what a resumed upload sends), a valid
Zip64 past 4 GB, and a source that changed is never passed off as the one planned."""
import io
import os
import random
import zipfile
import zlib

import pytest

from apps.delivery.bundle import BundleRefused, unpack
from apps.delivery.zipstream import SourceChanged, ZipStream


@pytest.fixture
def cases(tmp_path):
    rng = random.Random(5)
    folder = tmp_path / "a"
    folder.mkdir()
    entries = []
    for number, size in enumerate([70_001, 0, 1, 300_000, 4096]):
        path = folder / f"{number}.dcm"
        path.write_bytes(rng.randbytes(size))
        entries.append((f"LK/20220501_DLV1_CT/{number}.dcm", path))
    return entries


class Readable(io.RawIOBase):
    """The stream as a seekable file, so zipfile can read it without it ever being written."""

    def __init__(self, stream):
        self.stream, self.position = stream, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        self.position = [offset, self.position + offset, self.stream.length + offset][whence]
        return self.position

    def tell(self):
        return self.position

    def readinto(self, buffer):
        data = self.stream.read(self.position, len(buffer))
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def test_the_same_cases_give_the_same_bytes_and_zipfile_reads_them(cases, tmp_path):
    first = ZipStream(cases)
    os.utime(cases[0][1], (0, 0))
    second = ZipStream(list(reversed(cases)))
    assert first.length == second.length  # known before a byte was read
    written = tmp_path / "batch.zip"
    sha1 = first.write_to(written)
    assert written.stat().st_size == first.length and second.sha1() == sha1
    with zipfile.ZipFile(written) as bundle:
        assert bundle.testzip() is None
        assert [(i.filename, i.file_size, i.compress_type) for i in bundle.infolist()] == [
            (name, path.stat().st_size, zipfile.ZIP_STORED) for name, path in sorted(cases)]
    unpacked = unpack(written, tmp_path / "out", max_bytes=10**7)
    assert unpacked.files == [name for name, _ in sorted(cases)]
    assert all((tmp_path / "out" / name).read_bytes() == path.read_bytes() for name, path in cases)


def test_any_range_is_produced_on_its_own_as_a_resumed_upload_needs(cases, tmp_path):
    whole = tmp_path / "batch.zip"
    ZipStream(cases).write_to(whole)
    data = whole.read_bytes()
    rng = random.Random(1)
    starts = [0, 1, 30, len(data) - 1, len(data) - 98, *(rng.randrange(len(data)) for _ in range(40))]
    for start in starts:
        fresh = ZipStream(cases)  # a new process resuming: nothing computed yet
        size = rng.randrange(1, 200_000)
        assert bytes(fresh.read(start, size)) == data[start:start + size], start
        assert bytes(fresh.read(start + size, len(data))) == data[start + size:]


def test_the_entry_being_sent_is_named_for_progress(cases, tmp_path):
    stream = ZipStream(cases)
    stream.write_to(tmp_path / "batch.zip")
    with zipfile.ZipFile(tmp_path / "batch.zip") as bundle:
        starts = [(info.header_offset, info.filename) for info in bundle.infolist()]
    for (start, name), (previous_start, previous) in zip(starts[1:], starts):
        assert stream.entry_at(start) == name and stream.entry_at(start - 1) == previous
    assert stream.entry_at(0) == starts[0][1] and stream.entry_at(stream.length - 1) == ""


def test_a_file_that_changed_size_stops_the_stream_naming_it(cases):
    stream = ZipStream(cases)
    path = cases[3][1]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(SourceChanged, match=f"{path.name} is shorter than the 300000 bytes"):
        stream.read(0, stream.length)
    path.unlink()
    with pytest.raises(SourceChanged, match="vanished"):
        stream.read(0, stream.length)


def test_bytes_changed_between_a_cut_and_the_resumption_fail_the_unpacking(cases, tmp_path):
    stream = ZipStream(cases)
    cut = stream.length // 2
    before = bytes(stream.read(0, cut))  # what reached the receiving end before the cut
    path = cases[0][1]
    path.write_bytes(bytes(len(path.read_bytes())))  # same size, other bytes
    after = bytes(ZipStream(cases).read(cut, stream.length))
    (tmp_path / "received.zip").write_bytes(before + after)
    with pytest.raises(BundleRefused, match="cannot be read"):
        unpack(tmp_path / "received.zip", tmp_path / "out", max_bytes=10**7)
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_past_4_gb_it_is_a_valid_zip64(tmp_path):
    big, small = tmp_path / "big.dcm", tmp_path / "small.dcm"
    with open(big, "wb") as out:  # sparse: no disk used
        out.truncate(4 * 1024**3 + 12345)
    small.write_bytes(b"after the first 4 GB")
    stream = ZipStream([("LK/x_1_CT/1.dcm", big), ("LK/x_1_CT/2.dcm", small)])
    assert stream.length > 4 * 1024**3
    # The big entry's CRC from one buffer of zeros: reading 4 GB of holes would cost the kernel 4 GB
    # of zeroed page cache (~9 s here) and test nothing more.
    zeros, crc, left = memoryview(bytes(2**24)), 0, big.stat().st_size
    while left:
        crc, left = zlib.crc32(zeros[:min(left, len(zeros))], crc), left - min(left, len(zeros))
    stream._crc[0] = (crc, big.stat().st_size)
    with zipfile.ZipFile(Readable(stream)) as bundle:
        infos = bundle.infolist()
        assert [i.file_size for i in infos] == [big.stat().st_size, small.stat().st_size]
        assert infos[1].header_offset > 0xFFFFFFFF
        assert bundle.read("LK/x_1_CT/2.dcm") == b"after the first 4 GB"
