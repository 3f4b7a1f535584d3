"""Telling complete DICOM files from broken ones without decoding them."""
import pytest
from pydicom.data import get_testdata_file

from apps.dicom import files
from apps.dicom.errors import InvalidDicomFile

# Explicit/implicit little endian, big endian, deflated, JPEG 2000, RLE, JPEG, sequences (rtplan).
GOOD = ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm",
        "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "rtplan.dcm", "emri_small_RLE.dcm")


@pytest.mark.parametrize("name", GOOD)
def test_complete_files_pass_and_say_what_they_hold(name):
    path = get_testdata_file(name, download=False)
    info = files.inspect(path)
    assert info.sop_instance_uid and info.sop_class_uid and info.transfer_syntax_uid
    assert info.size == len(open(path, "rb").read()) and 132 < info.dataset_offset < info.size


@pytest.mark.parametrize("name", GOOD)
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_any_truncation_is_caught(name, keep):
    data = open(get_testdata_file(name, download=False), "rb").read()
    with pytest.raises(InvalidDicomFile, match="truncated"):
        files.inspect(data[: int(len(data) * keep)])


def test_the_library_own_truncated_examples_are_caught():
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"):
        with pytest.raises(InvalidDicomFile, match="truncated"):
            files.inspect(get_testdata_file(name, download=False))


def test_non_dicom_and_missing_files_are_named(tmp_path):
    text = tmp_path / "report.txt"
    text.write_text("hello " * 100)
    with pytest.raises(InvalidDicomFile, match=r"report\.txt: not a DICOM file"):
        files.inspect(text)
    with pytest.raises(InvalidDicomFile, match=r"absent\.dcm: cannot be read"):
        files.read_meta(tmp_path / "absent.dcm")
    with pytest.raises(InvalidDicomFile, match="lacks MediaStorageSOPClassUID"):
        files.inspect(get_testdata_file("meta_missing_tsyntax.dcm", download=False))


def test_iter_files_walks_folders_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for rel in ("b/2.dcm", "b/1.dcm", "a.dcm", ".hidden", ".git/x"):
        (tmp_path / rel).write_bytes(b"")
    single = tmp_path / "b" / "1.dcm"
    assert files.iter_files([tmp_path, single]) == [tmp_path / "a.dcm", tmp_path / "b/1.dcm", tmp_path / "b/2.dcm",
                                                    single]


def test_part10_bytes_wraps_a_received_dataset_into_a_readable_file():
    import pydicom
    from pydicom.filebase import DicomBytesIO

    from tests.pacs import dataset_part

    original = open(get_testdata_file("CT_small.dcm", download=False), "rb").read()
    info = files.inspect(original)
    dataset = original[info.dataset_offset:]
    wrapped = files.part10_bytes(info.sop_class_uid, info.sop_instance_uid, info.transfer_syntax_uid, dataset, "ORTHANC")
    meta = pydicom.dcmread(DicomBytesIO(wrapped), stop_before_pixels=True).file_meta
    assert (meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID) == (
        info.sop_class_uid, info.sop_instance_uid, info.transfer_syntax_uid)
    assert meta.SourceApplicationEntityTitle == "ORTHANC" and meta.FileMetaInformationVersion == b"\x00\x01"
    assert dataset_part(wrapped) == dataset and files.inspect(wrapped).size == len(wrapped)
