"""What the catalog reads of a file (apps/dicom/catalog_entry.py): the quick reader gives what pydicom
gives, other files go pydicom's way, and files the catalog cannot hold are refused with the reason."""
import io
import os

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from apps.dicom import catalog_entry
from apps.dicom.catalog_entry import EntryError, entry_from_dataset, read_entry


def by_pydicom(path):
    return entry_from_dataset(pydicom.dcmread(path, stop_before_pixels=True), os.path.getsize(path))


def test_quick_reader_agrees_with_pydicom(generate, monkeypatch):
    files = sorted(generate(patients=3, instances=2, modalities=("CT", "MR", "US")).rglob("*.dcm"))
    quick = [read_entry(p) for p in files]
    assert quick == [by_pydicom(p) for p in files]
    monkeypatch.setattr(catalog_entry, "_quick", lambda head, size: (_ for _ in ()).throw(catalog_entry._Slow()))
    assert [read_entry(p) for p in files] == quick  # pydicom's way gives the same


def test_implicit_vr_and_other_character_sets_are_read(generate, tmp_path):
    source = next(generate().rglob("*.dcm"))
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = tmp_path / "implicit.dcm"
    ds.save_as(implicit, implicit_vr=True, little_endian=True)
    assert read_entry(implicit) == by_pydicom(implicit)
    ds = pydicom.dcmread(source)
    ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 192", "Müller^Jürgen"
    utf8 = tmp_path / "utf8.dcm"
    ds.save_as(utf8)
    assert read_entry(utf8)["patient_name"] == "Müller^Jürgen"


def test_files_the_catalog_cannot_hold(generate, tmp_path):
    source = next(generate().rglob("*.dcm"))
    (tmp_path / "text.dcm").write_text("not dicom at all")
    with pytest.raises(EntryError, match="not a DICOM file"):
        read_entry(tmp_path / "text.dcm")
    ds = pydicom.dcmread(source)
    del ds.SeriesInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer)
    (tmp_path / "no-series.dcm").write_bytes(buffer.getvalue())
    with pytest.raises(EntryError, match="SeriesInstanceUID"):
        read_entry(tmp_path / "no-series.dcm")
    os.mkfifo(tmp_path / "fifo.dcm")  # never blocks on it
    with pytest.raises(EntryError, match="not a regular file"):
        read_entry(tmp_path / "fifo.dcm")



def test_a_header_longer_than_the_first_look_is_read_again_and_gives_the_same(generate, tmp_path, monkeypatch):
    """Most headers fit the first read (FIRST_BYTES); one whose catalog elements end beyond it (here after a
    vendor's private element) is read again, up to HEAD_BYTES, still the quick way, not pydicom's."""
    ds = pydicom.dcmread(next(generate().rglob("*.dcm")))
    ds.private_block(0x0009, "A VENDOR", create=True).add_new(0x01, "OB", b"\0" * 2 * catalog_entry.FIRST_BYTES)
    long_head = tmp_path / "long-head.dcm"
    ds.save_as(long_head)
    expected = by_pydicom(long_head)
    with pytest.raises(catalog_entry._Slow):
        catalog_entry._quick(*catalog_entry.read_head(long_head, catalog_entry.FIRST_BYTES))
    monkeypatch.setattr(catalog_entry.pydicom, "dcmread", None)  # pydicom's way would fail here
    assert read_entry(long_head) == expected


def test_the_written_out_tags_are_pydicoms():
    """FIELDS writes each keyword's tag out (the quick way imports no pydicom): they must be the dictionary's."""
    assert {keyword: tag for keyword, tag, _ in catalog_entry.FIELDS.values()} == {
        keyword: pydicom.datadict.tag_for_keyword(keyword) for keyword, _, _ in catalog_entry.FIELDS.values()}
