"""Staging writes: whole files or none, under the name asked for, private to the portal's user."""
import stat
import threading

import pytest

from apps.dicom.staging import MoveStaging, write_atomically


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
