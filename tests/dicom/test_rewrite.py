"""Patient rewrite from a folder name: UTF-8 names (ISO_IR 192), other text re-encoded, not modified in place."""
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from apps.dicom.errors import InvalidDicomFile
from apps.dicom.rewrite import Patient, patient_from_folder, rewrite_patient


@pytest.mark.parametrize("name, expected", [
    ("#00042-홍^길동", ("00042", "홍^길동")),
    ("#12345-HongGildong", ("12345", "HongGildong")),
    ("#00001-Kim#Young^Hee", ("00001", "Kim#Young^Hee")),
    ("#7-王^小明", ("7", "王^小明")),
])
def test_folder_names_give_patient_id_and_name(name, expected):
    assert patient_from_folder(name) == Patient(*expected)


@pytest.mark.parametrize("name", ["12345-HongGildong", "#ABC123-Name", "#12345_HongGildong", "#12345-", "#-x"])
def test_names_that_do_not_match_are_refused(name):
    with pytest.raises(ValueError, match="does not match|empty"):
        patient_from_folder(name)


def test_a_stricter_pattern_and_values_too_long_for_dicom():
    with pytest.raises(ValueError):
        patient_from_folder("#1-홍길동", r"^#([0-9]+)-([\#^A-Za-z0-9]+)$")  # the old ASCII-only pattern
    with pytest.raises(ValueError, match="PatientID"):
        patient_from_folder("#" + "1" * 65 + "-X")


def latin1_file(path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID, ds.PatientName = "OLD", "Müller^Jürgen"
    ds.StudyDescription = "Schädel nativ"
    ds.add_new(0x7FE00010, "OB", b"\0" * 64)  # an image is complete only with its pixel data
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_rewrite_writes_utf8_and_keeps_other_text(tmp_path):
    source = tmp_path / "in.dcm"
    original = latin1_file(source)
    before = source.read_bytes()
    assert "Schädel".encode("latin-1") in before
    uid = rewrite_patient(source, tmp_path / "out" / "x.dcm", Patient("00042", "홍^길동"))
    assert uid == original.SOPInstanceUID
    raw = (tmp_path / "out" / "x.dcm").read_bytes()
    assert "홍^길동".encode("utf-8") in raw and "Schädel".encode("utf-8") in raw
    ds = pydicom.dcmread(tmp_path / "out" / "x.dcm")
    assert (ds.SpecificCharacterSet, ds.PatientID, str(ds.PatientName)) == ("ISO_IR 192", "00042", "홍^길동")
    assert ds.StudyDescription == "Schädel nativ"
    assert source.read_bytes() == before  # the source is never touched
    assert not list((tmp_path / "out").glob("*.partial"))


def test_a_non_dicom_file_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidDicomFile, match="notes.txt"):
        rewrite_patient(tmp_path / "notes.txt", tmp_path / "out.dcm", Patient("1", "A"))
    assert not (tmp_path / "out.dcm").exists()


def test_a_truncated_file_is_refused_not_rewritten_into_a_shorter_valid_one(tmp_path):
    source = tmp_path / "in.dcm"
    latin1_file(source)
    data = source.read_bytes()
    source.write_bytes(data[:-7])
    with pytest.raises(InvalidDicomFile, match="truncated"):
        rewrite_patient(source, tmp_path / "out.dcm", Patient("1", "A"))
    assert not (tmp_path / "out.dcm").exists()
