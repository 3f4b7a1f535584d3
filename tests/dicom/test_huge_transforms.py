"""The watched inbox's patient rewrite and a project's de-identification of a huge multi-frame instance read
its head only (apps/dicom/split.py) and copy the pixel data from the original: the process's peak RSS grows
by far less than the file, the pixel data comes out byte for byte, the header is rewritten. On small files
the large-file path gives what the whole-file path gives. Hostile files (a pixel data length past the end,
a cut fragment, megabytes after the pixel data) are refused naming the fault; nothing is left written."""
import errno
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from apps.dicom import deidentify, files, split
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.paths import open_regular
from apps.dicom.rewrite import Patient, rewrite_patient, rewrite_patient_bytes
from tests.dicom.memory import peak_growth_mb

RECIPE = deidentify.Recipe(b"s" * 32, ["retain-longitudinal-dates"], allow_burned_in=True)
SAMPLES = ["CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
           "SC_rgb_rle_2frame.dcm", "MR_small_bigendian.dcm", "rtdose.dcm", "examples_ybr_color.dcm"]


def patient_for(patient_id: str) -> deidentify.Patient:
    return deidentify.Patient(pseudonym="TRIAL-0001", date_shift_days=-3)


def pixels_of(path: Path) -> tuple[int, int]:
    """(start, end) of the pixel data element in the file."""
    with open_regular(path) as fp:
        pixels = split.split(fp, str(path)).pixels
    return pixels.start, pixels.end


def same_range(a: Path, a_range: tuple[int, int], b: Path, b_range: tuple[int, int]) -> bool:
    if a_range[1] - a_range[0] != b_range[1] - b_range[0]:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(a_range[0])
        fb.seek(b_range[0])
        left = a_range[1] - a_range[0]
        while left:
            step = min(left, 1 << 20)
            if fa.read(step) != fb.read(step):
                return False
            left -= step
    return True


def test_a_huge_instances_patient_rewrite_copies_its_pixel_data_in_flat_memory(huge, tmp_path):
    path, original = huge
    target = tmp_path / "out" / "rewritten.dcm"
    with peak_growth_mb() as growth:
        uid = rewrite_patient(path, target, Patient("00042", "홍^길동"))
    print(f"patient rewrite of {path.stat().st_size / 1e6:.0f} MB: peak RSS grew {growth.mb:.1f} MB")
    assert uid == original.SOPInstanceUID
    head = pydicom.dcmread(target, stop_before_pixels=True)
    assert (head.PatientID, str(head.PatientName), head.SpecificCharacterSet) == ("00042", "홍^길동", "ISO_IR 192")
    assert head.NumberOfFrames == original.NumberOfFrames and head.StudyInstanceUID == original.StudyInstanceUID
    assert same_range(path, pixels_of(path), target, pixels_of(target)), "the pixel data, byte for byte"
    assert files.inspect(target).size == target.stat().st_size  # a complete file
    assert [p.name for p in target.parent.iterdir()] == ["rewritten.dcm"]
    assert growth.mb < 40


def test_a_huge_instance_is_de_identified_in_flat_memory(huge, tmp_path):
    path, original = huge
    target = tmp_path / "deid.dcm"
    with peak_growth_mb() as growth:
        result = deidentify.deidentify_file(path, RECIPE, patient_for)
        with open(target, "wb") as out:
            result.write_to(out)
    print(f"de-identification of {path.stat().st_size / 1e6:.0f} MB: peak RSS grew {growth.mb:.1f} MB")
    assert result.rest is not None and len(result.data) < 10_000 and result.size == target.stat().st_size
    head = pydicom.dcmread(target, stop_before_pixels=True)
    assert head.PatientID == "TRIAL-0001" and head.PatientIdentityRemoved == "YES"
    assert head.SOPInstanceUID == result.sop_instance_uid != original.SOPInstanceUID
    assert "InstitutionName" not in head or head.InstitutionName != "Huge Hospital"
    assert head.StudyDate == "20231229"  # shifted by the patient's -3 days
    assert same_range(path, pixels_of(path), target, pixels_of(target))
    files.inspect(target)
    buffer = bytearray(4096)  # read from anywhere, across the head's end too
    result.read_into(len(result.data) - 100, memoryview(buffer))
    assert bytes(buffer) == target.read_bytes()[len(result.data) - 100:len(result.data) + 3996]
    assert growth.mb < 40


def test_an_inboxs_rewrite_then_de_identification_of_a_huge_instance(huge):
    path, _ = huge

    def before(data):
        return rewrite_patient_bytes(data, Patient("00042", "Kim^Lee"))

    seen = []
    result = deidentify.deidentify_file(path, RECIPE, lambda pid: seen.append(pid) or patient_for(pid), before=before)
    assert seen == ["00042"] and result.rest is not None  # the project's map sees the folder's patient


@pytest.mark.parametrize("name", SAMPLES)
def test_the_large_file_path_gives_what_the_whole_file_path_gives(name, monkeypatch, tmp_path):
    source = get_testdata_file(name)
    whole = deidentify.deidentify_file(source, RECIPE, patient_for)
    rewritten_whole = tmp_path / "whole.dcm"
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)
    parted = deidentify.deidentify_file(source, RECIPE, patient_for)
    assert b"".join(parted.chunks()) == whole.data and parted.size == len(whole.data) and parted.rest is not None
    rewrite_patient(source, tmp_path / "parted.dcm", Patient("7", "A^B"))
    ds = pydicom.dcmread(source)
    ds.decode()
    ds.SpecificCharacterSet, ds.PatientID, ds.PatientName = "ISO_IR 192", "7", "A^B"
    ds.save_as(rewritten_whole, enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "parted.dcm") == pydicom.dcmread(rewritten_whole)
    assert pydicom.dcmread(tmp_path / "parted.dcm").PixelData == ds.PixelData


def cut(source: Path, target: Path, keep: int) -> Path:
    target.write_bytes(source.read_bytes()[:keep])
    return target


def test_hostile_large_files_are_refused_naming_the_fault(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)
    native = Path(get_testdata_file("emri_small.dcm"))
    lying = bytearray(native.read_bytes())
    at = lying.rindex(b"\xe0\x7f\x10\x00OW")
    lying[at + 8:at + 12] = (len(lying) * 2).to_bytes(4, "little")  # a pixel data length past the end
    (tmp_path / "lying.dcm").write_bytes(bytes(lying))
    rle = Path(get_testdata_file("emri_small_RLE.dcm"))
    padded = tmp_path / "padded.dcm"
    padded.write_bytes(native.read_bytes() + b"\xfc\xff\xfc\xff" + b"OB\0\0" + (2 << 20).to_bytes(4, "little")
                       + b"\0" * (2 << 20))
    cases = {tmp_path / "lying.dcm": "truncated: the pixel data needs",
             cut(rle, tmp_path / "cut_rle.dcm", rle.stat().st_size - 2000): "truncated: a pixel data fragment",
             cut(native, tmp_path / "cut_head.dcm", 600): "truncated",
             padded: "follow the pixel data"}
    for path, fault in cases.items():
        with pytest.raises(deidentify.CannotDeidentify, match=fault):
            deidentify.deidentify_file(path, RECIPE, patient_for)
        target = tmp_path / "out" / f"{path.stem}-rewritten.dcm"
        with pytest.raises(InvalidDicomFile, match=fault) as refused:
            rewrite_patient(path, target, Patient("1", "A"))
        assert str(path) in refused.value.message  # the inbox's report names the file
        assert not target.parent.exists() or not list(target.parent.iterdir()), "nothing left written"


def test_a_large_original_that_changes_after_its_head_was_read_is_noticed(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)
    path = tmp_path / "moving.dcm"
    path.write_bytes(Path(get_testdata_file("emri_small.dcm")).read_bytes())
    result = deidentify.deidentify_file(path, RECIPE, patient_for)
    with open(path, "ab") as grow:
        grow.write(b"\0" * 16)
    with pytest.raises(InvalidDicomFile, match="changed since it was read"):
        result.write_to(io.BytesIO())
    saved = tmp_path / "out" / "copy.dcm"
    saved.parent.mkdir()
    with pytest.raises(InvalidDicomFile, match="changed since it was read"):
        result.save(saved)  # what a project's send and a delivery to a PACS write: nothing half-written stays
    assert list(saved.parent.iterdir()) == []


def test_a_saved_de_identified_instance_is_whole_under_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)
    path = tmp_path / "large.dcm"
    path.write_bytes(Path(get_testdata_file("emri_small.dcm")).read_bytes())
    result = deidentify.deidentify_file(path, RECIPE, patient_for)
    saved = tmp_path / "copy.dcm"
    result.save(saved)
    assert result.rest is not None and saved.read_bytes() == b"".join(result.chunks())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.dcm", "large.dcm"]  # no partial left


def test_a_save_the_disk_cuts_short_leaves_nothing_behind(tmp_path, monkeypatch):
    result = deidentify.deidentify_file(Path(get_testdata_file("emri_small.dcm")), RECIPE, patient_for)

    def disk_full_midway(self, out):
        out.write(b"half an instance")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(result), "write_to", disk_full_midway)
    with pytest.raises(OSError, match="No space left"):
        result.save(tmp_path / "copy.dcm")
    assert list(tmp_path.iterdir()) == []


def test_a_huge_encapsulated_instance_is_proven_complete_without_mapping_its_pages(tmp_path):
    """split.open_complete (before a C-STORE or a STOW-RS of a large file) follows 7,500 fragments by their
    headers: a mapping walked fragment by fragment put every page of the file into the process's RSS."""
    import os
    import struct

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import RLELossless, generate_uid

    path = tmp_path / "tiles.dcm"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows = ds.Columns = 128
    ds.NumberOfFrames, ds.SamplesPerPixel, ds.BitsAllocated = 7500, 1, 8
    ds.save_as(path, enforce_file_format=True)
    tile = os.urandom(20000)
    with open(path, "ab") as out:
        out.write(struct.pack("<HH2sHLHHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF, 0xFFFE, 0xE000, 0))
        for _ in range(7500):
            out.write(struct.pack("<HHL", 0xFFFE, 0xE000, len(tile)) + tile)
        out.write(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    info = files.read_meta(path)
    with peak_growth_mb() as growth:
        with split.open_complete(path, info) as complete:
            assert complete.dataset_size == path.stat().st_size - info.dataset_offset
    print(f"proof of {path.stat().st_size / 1e6:.0f} MB in 7,500 fragments: peak RSS grew {growth.mb:.1f} MB")
    assert growth.mb < 40
    with open(path, "r+b") as cut:
        cut.truncate(path.stat().st_size - 30000)
    with pytest.raises(InvalidDicomFile, match="changed while it was being sent"):
        with split.open_complete(path, info):
            pass
    with pytest.raises(InvalidDicomFile, match="truncated: a pixel data fragment needs"):
        with split.open_complete(path, files.read_meta(path)):
            pass


def test_a_large_file_without_pixel_data_is_de_identified_whole_signatures_dropped(tmp_path, monkeypatch):
    """What ends the header of a file without pixel data (a Digital Signatures Sequence) is no pixel data to
    pass on unchanged: such a file is read whole, and the profile removes the signatures."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    signature = Dataset()
    signature.DigitalSignatureUID = "1.2.3.4"
    ds.add_new(0xFFFAFFFA, "SQ", Sequence([signature]))
    path = tmp_path / "signed.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = deidentify.deidentify_file(path, RECIPE, patient_for)
    assert result.rest is None and b"1.2.3.4" not in result.data
    assert "DigitalSignaturesSequence" not in pydicom.dcmread(io.BytesIO(result.data))
