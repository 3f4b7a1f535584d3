"""Staging writes: whole files or none, under the name asked for, private to the portal's user."""
import errno
import stat
import threading

import pytest

from apps.dicom import staging as staging_module
from apps.dicom.staging import BackgroundWrites, MoveStaging, write_atomically


def test_a_write_creates_the_folder_leaves_no_temporary_file_and_replaces_an_earlier_copy(tmp_path):
    target = tmp_path / "AE" / "17" / "1.2.3.dcm"
    write_atomically(target, b"first")
    write_atomically(target, memoryview(bytearray(b"second, longer")))
    assert target.read_bytes() == b"second, longer"
    assert [p.name for p in target.parent.iterdir()] == ["1.2.3.dcm"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    target = tmp_path / "1.2.3.dcm"
    with pytest.raises(TypeError):
        write_atomically(target, 12345)  # not bytes
    assert list(tmp_path.iterdir()) == []


def test_threads_writing_the_same_instance_at_once_leave_one_whole_copy(tmp_path):
    staging, folder = MoveStaging(tmp_path), tmp_path / "AE" / "5"
    payloads = [bytes([n]) * 200_000 for n in range(8)]
    threads = [threading.Thread(target=staging.write, args=(folder, "1.2.3", data)) for data in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert staging.instances(folder) == [folder / "1.2.3.dcm"]
    assert (folder / "1.2.3.dcm").read_bytes() in payloads
    assert [p.name for p in folder.iterdir()] == ["1.2.3.dcm"]


def test_background_writes_land_whole_and_tell_when_their_bytes_are_no_longer_read(tmp_path):
    staging, move = MoveStaging(tmp_path), tmp_path / "AE" / "7"
    done = []
    with BackgroundWrites(max_bytes=300_000) as writes:  # a small queue: submit waits for the disk
        for n in range(20):
            writes.submit(move, move, f"1.2.{n}", [b"head", bytes([n]) * 100_000], lambda n=n: done.append(n))
    assert sorted(done) == list(range(20))  # close() wrote everything queued
    assert [p.name for p in staging.instances(move)] == sorted(f"1.2.{n}.dcm" for n in range(20))
    assert (move / "1.2.3.dcm").read_bytes() == b"head" + bytes([3]) * 100_000
    assert staging.write_failure(move) is None


def test_a_background_write_that_fails_is_recorded_in_its_move_and_refuses_the_rest_of_that_move(
        tmp_path, monkeypatch):
    staging, move, other = MoveStaging(tmp_path), tmp_path / "AE" / "8", tmp_path / "AE" / "9"
    real_write_all = staging_module._write_all

    def disk_full_for_move_8(fd, data):
        if bytes(data[0] if isinstance(data, (list, tuple)) else data).startswith(b"x"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, data)

    with BackgroundWrites() as writes:
        writes.submit(move, move, "1.2.1", b"w" * 10)  # the move's first instance: written at once
        writes.submit(other, other, "1.2.9", b"z" * 10)
        monkeypatch.setattr(staging_module, "_write_all", disk_full_for_move_8)
        writes.submit(move, move, "1.2.2", b"x" * 10)  # answered: it fails on the writer's thread
        writes.flush()
        assert staging.write_failure(move) == "No space left on device"
        with pytest.raises(OSError, match="an earlier instance of this retrieval could not be written"):
            writes.submit(move, move, "1.2.3", b"y" * 10)
        writes.submit(other, other, "1.2.4", b"z" * 10)  # another move is not concerned
    assert [p.name for p in staging.instances(move)] == ["1.2.1.dcm"]
    assert (other / "1.2.4.dcm").read_bytes() == b"z" * 10


def test_when_a_move_cannot_make_its_folder_its_first_instance_is_refused_before_it_is_answered(tmp_path):
    (tmp_path / "AE").write_text("a file where the staging folder of our AE title should be")
    move, done = tmp_path / "AE" / "11", []
    with BackgroundWrites() as writes:
        with pytest.raises(NotADirectoryError):
            writes.submit(move, move, "1.2.1", b"x", lambda: done.append(1))
        with pytest.raises(OSError, match="Not a directory"):  # the rest of that move: refused at once
            writes.submit(move, move, "1.2.2", b"y")
    assert done == [1]


def test_an_instance_queued_after_its_retrieval_removed_the_folder_is_dropped_not_written(tmp_path):
    staging, move = MoveStaging(tmp_path), tmp_path / "AE" / "10"
    with BackgroundWrites() as writes:
        writes.submit(move, move, "1.2.1", b"first")
        writes.flush()
        writes.submit(move, move, "1.2.2", b"queued before the end")
        staging.remove(move)  # the retrieval ended (or was canceled) and took its staging folder away
        for folder in (move, move / "foreign" / "x"):
            with pytest.raises(OSError, match="this retrieval is over"):
                writes.submit(move, folder, "1.2.3", b"late")
    assert not move.exists() and list(move.parent.iterdir()) == []


def test_what_was_answered_for_but_is_not_on_disk_yet_is_known_to_the_retrieval(tmp_path):
    staging, move = MoveStaging(tmp_path), tmp_path / "AE" / "12"
    gate = threading.Event()
    with BackgroundWrites() as writes:
        writes.submit(move, move, "1.2.1", b"first")
        assert staging.unwritten(move) == set()
        writes.submit(move, move, "1.2.2", [b"second"], gate.wait)  # the writer stops after this write
        writes.submit(move, move / "foreign" / "other-study", "1.2.3", b"third, of another study")
        assert "foreign/other-study/1.2.3.dcm" in staging.unwritten(move)  # not written while the writer waits
        gate.set()
    assert staging.unwritten(move) == set() and len(staging.instances(move)) == 2
