"""Hostile files on disk handed to the one way of storing instances on a server (apps/servers/storing.py):
a FIFO or a device among the files neither hangs the send nor stops the others, and is named with why it
was not sent; a file swapped for another between its header being read and its sending is not sent as
the instance the header promised."""
import os
import shutil

import pydicom
import pytest

from apps.dicom import files
from apps.dicom.demo.synthetic import write_dataset
from apps.servers import storing

pytestmark = pytest.mark.django_db
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
