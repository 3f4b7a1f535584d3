"""Staging writes: whole files or none, under the name asked for, private to the portal's user."""
import errno
import stat
import threading

import pytest

from apps.dicom import staged as staged_module
from apps.dicom import staging as staging_module
from apps.dicom.staged import write_atomically
from apps.dicom.staging import AnsweredWrites, MoveStaging


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


def test_threads_writing_the_same_instance_at_once_leave_one_whole_copy_and_the_others_apart(tmp_path):
    staging, folder = MoveStaging(tmp_path), tmp_path / "AE" / "5"
    payloads = [bytes([n]) * 200_000 for n in range(8)]
    threads = [threading.Thread(target=staging.write, args=(folder, "1.2.3", data)) for data in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert staging.instances(folder) == [folder / "1.2.3.dcm"]
    staged = (folder / "1.2.3.dcm").read_bytes()
    assert staged in payloads
    assert sorted(p.name for p in folder.iterdir()) == ["1.2.3.dcm", "foreign"], "no half-written file"
    apart = [p.read_bytes() for p in (folder / "foreign" / "duplicate").iterdir()]
    assert sorted(apart + [staged]) == sorted(payloads), "never replaced: every other copy whole, kept apart"


def test_writes_left_for_after_the_answer_land_whole_and_tell_when_their_bytes_are_no_longer_read(tmp_path):
    staging, move = MoveStaging(tmp_path), tmp_path / "AE" / "7"
    done = []
    with AnsweredWrites() as writes:
        assert writes.after_answer(move, move, "1.2.0", [b"head", bytes(100_000)], lambda: done.append(0)) is None
        assert done == [0] and [p.name for p in staging.instances(move)] == ["1.2.0.dcm"]  # the first: at once
        later = [writes.after_answer(move, move, f"1.2.{n}", [b"head", bytes([n]) * 100_000],
                                     lambda n=n: done.append(n)) for n in range(1, 20)]
        assert done == [0] and len(staging.instances(move)) == 1  # answered for, not yet written
        assert staging.unwritten(move) == {f"1.2.{n}.dcm" for n in range(1, 20)}
        for write in later:
            write()
    assert done == list(range(20))
    assert [p.name for p in staging.instances(move)] == sorted(f"1.2.{n}.dcm" for n in range(20))
    assert (move / "1.2.3.dcm").read_bytes() == b"head" + bytes([3]) * 100_000
    assert staging.unwritten(move) == set() and staging.write_failure(move) is None


def test_a_write_after_the_answer_that_fails_is_recorded_in_its_move_and_refuses_the_rest_of_that_move(
        tmp_path, monkeypatch):
    staging, move, other = MoveStaging(tmp_path), tmp_path / "AE" / "8", tmp_path / "AE" / "9"
    real_write_all = staged_module.write_all

    def disk_full_for_move_8(fd, data):
        if bytes(data[0] if isinstance(data, (list, tuple)) else data).startswith(b"x"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, data)

    with AnsweredWrites() as writes:
        writes.after_answer(move, move, "1.2.1", b"w" * 10)  # the move's first instance: written at once
        writes.after_answer(other, other, "1.2.9", b"z" * 10)
        monkeypatch.setattr(staged_module, "write_all", disk_full_for_move_8)
        write = writes.after_answer(move, move, "1.2.2", b"x" * 10)
        write()  # after the answer: the failure can no longer be answered, so it is recorded
        assert staging.write_failure(move) == "No space left on device"
        with pytest.raises(OSError, match="an earlier instance of this retrieval could not be written"):
            writes.after_answer(move, move, "1.2.3", b"y" * 10)
        writes.after_answer(other, other, "1.2.4", b"z" * 10)()  # another move is not concerned
    assert [p.name for p in staging.instances(move)] == ["1.2.1.dcm"]
    assert (other / "1.2.4.dcm").read_bytes() == b"z" * 10


def test_when_a_move_cannot_make_its_folder_its_first_instance_is_refused_before_it_is_answered(tmp_path):
    (tmp_path / "AE").write_text("a file where the staging folder of our AE title should be")
    move, done = tmp_path / "AE" / "11", []
    with AnsweredWrites() as writes:
        with pytest.raises(NotADirectoryError):
            writes.after_answer(move, move, "1.2.1", b"x", lambda: done.append(1))
        with pytest.raises(OSError, match="Not a directory"):  # the rest of that move: refused at once
            writes.after_answer(move, move, "1.2.2", b"y")
    assert done == [1]


def test_an_instance_answered_as_its_retrieval_removed_the_folder_is_dropped_not_written(tmp_path):
    staging, move, done = MoveStaging(tmp_path), tmp_path / "AE" / "10", []
    with AnsweredWrites() as writes:
        writes.after_answer(move, move, "1.2.1", b"first")
        write = writes.after_answer(move, move, "1.2.2", b"answered before the end", lambda: done.append(2))
        staging.remove(move)  # the retrieval ended (or was canceled) and took its staging folder away
        write()
        for folder in (move, move / "foreign" / "x"):
            with pytest.raises(OSError, match="this retrieval is over"):
                writes.after_answer(move, folder, "1.2.3", b"late")
    assert done == [2]  # its buffer is free again
    assert not move.exists() and list(move.parent.iterdir()) == []


def test_after_close_a_move_s_instances_are_refused_and_what_was_answered_is_still_written(tmp_path):
    staging, move = MoveStaging(tmp_path), tmp_path / "AE" / "13"
    writes = AnsweredWrites()
    writes.after_answer(move, move, "1.2.1", b"first")
    write = writes.after_answer(move, move, "1.2.2", b"second")
    writes.close()
    with pytest.raises(OSError, match="the receiver is stopping"):
        writes.after_answer(move, move, "1.2.3", b"third")
    write()
    assert [p.name for p in staging.instances(move)] == ["1.2.1.dcm", "1.2.2.dcm"]
    assert staging.unwritten(move) == set()


def test_threads_answering_for_many_moves_at_once_keep_every_ledger_line(tmp_path, monkeypatch):
    """The ledgers of the least recent moves are closed as new ones open: a thread must never write its
    line into a ledger another thread just closed (or into whatever file took its descriptor)."""
    monkeypatch.setattr(staging_module, "LEDGERS_OPEN", 2)
    staging, folders = MoveStaging(tmp_path), [tmp_path / "AE" / str(n) for n in range(6)]
    with AnsweredWrites() as writes:
        for folder in folders:
            writes.after_answer(folder, folder, "1.2.0", b"first")

        def answer(folder):
            for n in range(1, 200):
                writes.after_answer(folder, folder, f"1.2.{n}", b"x")

        threads = [threading.Thread(target=answer, args=(folder,)) for folder in folders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for folder in folders:
        assert staging.unwritten(folder) == {f"1.2.{n}.dcm" for n in range(1, 200)}


def _flags(folder) -> int:
    import fcntl
    import os
    import struct
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return struct.unpack_from("i", fcntl.ioctl(fd, staged_module.FS_IOC_GETFLAGS, bytes(8)))[0]
    finally:
        os.close(fd)


def test_each_move_folder_is_made_in_a_folder_marked_top_of_hierarchy_so_ext4_spreads_the_moves(tmp_path):
    # The staging area is on ext4 here (as on the portal's hosts): the flag is what makes a move folder
    # start in a block group of its own, away from the inodes an earlier study's deletion just freed.
    staging = MoveStaging(tmp_path / "staging")
    c_get = tmp_path / "staging" / "c-get" / "7-abc"
    with AnsweredWrites() as writes:
        writes.after_answer(staging.folder("PORTAL", 5), staging.folder("PORTAL", 5), "1.2.1", b"w" * 10)
        writes.stream(c_get, c_get, "1.2.2", [b"head"]).commit()
    for parent in (tmp_path / "staging" / "PORTAL", c_get.parent):
        assert _flags(parent) & staged_module.FS_TOPDIR_FL, parent
    assert not _flags(tmp_path / "staging" / "PORTAL" / "5") & staged_module.FS_TOPDIR_FL  # only the parents
    assert (tmp_path / "staging" / "PORTAL" / "5" / "1.2.1.dcm").read_bytes() == b"w" * 10
    assert (c_get / "1.2.2.dcm").read_bytes() == b"head"
