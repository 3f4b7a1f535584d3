"""Generated import trees: small real DICOM files written with pydicom, plus the real compressed files
from the pydicom wheel and pydicom-data (nothing downloads)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
# Real compressed files: the pydicom wheel's JPEG 2000 lossless MR and pydicom-data's RLE ultrasound.
REAL_J2K = "MR_small_jp2klossless.dcm"
REAL_RLE = "OBXXXX1A_rle.dcm"


def base(patient_id: str, name: str, sop_class: str = CT_STORAGE, birth: str = "19700101") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, name, birth, "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = {CT_STORAGE: "CT", BASIC_TEXT_SR: "SR"}.get(sop_class, "OT")
    return ds


def halves(rows: int, cols: int, low: int, high: int, dtype) -> np.ndarray:
    """Left half `low`, right half `high`: polarity is the sign of right mean - left mean."""
    arr = np.full((rows, cols), low, dtype=dtype)
    arr[:, cols // 2:] = high
    return arr


def grey(ds: Dataset, arr: np.ndarray, photometric: str = "MONOCHROME2") -> Dataset:
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = ds.BitsStored = arr.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = arr.tobytes()
    return ds


def ct(patient_id: str, name: str, *, rows=64, cols=96, birth="19700101") -> Dataset:
    """int16 CT, RescaleIntercept -1024, window 40/400 (with a second window the renderer must ignore):
    left half air (-1000 HU: black), right half water (0 HU: grey ~102)."""
    ds = grey(base(patient_id, name, birth=birth), halves(rows, cols, 24, 1024, np.int16))
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = [40, 300], [400, 1500]
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def build_tree(root: Path, *, months=("2024-01", "2024-02"), patients=3, images=2) -> dict:
    """The import service's YYYY-MM/<PatientID>/*.dcm layout with every kind of file an import must cope with.
    Returns what an import of it must report."""
    expected = {"imported": [], "duplicate": [], "failed": {}, "patients": set(), "notes": {}}

    def add(path: Path, outcome: str, patient: str | None = None, reason: str = ""):
        rel = str(path.relative_to(root))
        if outcome == "failed":
            expected["failed"][rel] = reason
        else:
            expected[outcome].append(rel)
            expected["patients"].add(patient)

    for month in months:
        for p in range(patients):
            pid = f"P{p:03d}"
            for i in range(images):
                add(write(ct(pid, f"Doe^P{p}"), root / month / pid / f"{month}_img{i}.dcm"), "imported", pid)
    first = root / months[0] / "P000" / f"{months[0]}_img0.dcm"
    renamed = shutil.copy(first, root / months[0] / "P000" / "copy_of_img0.dcm")
    add(Path(renamed), "duplicate", "P000")

    odd = root / months[-1] / "mixed"
    mono1 = grey(base("M001", "Mono^One"), halves(32, 48, 100, 900, np.uint16), "MONOCHROME1")
    mono2 = grey(base("M001", "Mono^One"), halves(32, 48, 100, 900, np.uint16), "MONOCHROME2")
    add(write(mono1, odd / "mono1.dcm"), "imported", "M001")
    add(write(mono2, odd / "mono2.dcm"), "imported", "M001")
    rgb = base("C001", "张^三", SC_STORAGE)  # a Chinese name, in UTF-8
    rgb.SpecificCharacterSet = "ISO_IR 192"
    pixels = np.zeros((24, 40, 3), np.uint8)
    pixels[..., 0] = 250  # pure red
    rgb.Rows, rgb.Columns, rgb.SamplesPerPixel, rgb.PhotometricInterpretation = 24, 40, 3, "RGB"
    rgb.PlanarConfiguration, rgb.BitsAllocated, rgb.BitsStored, rgb.HighBit, rgb.PixelRepresentation = 0, 8, 8, 7, 0
    rgb.PixelData = pixels.tobytes()
    add(write(rgb, odd / "rgb.dcm"), "imported", "C001")

    for name in (REAL_J2K, REAL_RLE):
        target = root / "real" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name, download=False), target)
        from pydicom import dcmread
        add(target, "imported", str(dcmread(target, stop_before_pixels=True).PatientID))

    truncated = root / months[0] / "P001" / "truncated.dcm"
    data = write(ct("P001", "Doe^P1"), truncated).read_bytes()
    truncated.write_bytes(data[:len(data) - 3000])
    add(truncated, "failed", reason="pixel data truncated")
    (root / months[0] / "notes.txt").write_text("scanner export log, not an image\n")
    add(root / months[0] / "notes.txt", "failed", reason="not a DICOM file")
    no_pixels = base("P002", "Doe^P2", BASIC_TEXT_SR)
    no_pixels.Modality = "SR"
    add(write(no_pixels, root / months[0] / "P002" / "report.dcm"), "failed", reason="no pixel data")

    orphan = ct("", "")
    path = write(orphan, root / months[1] / "FOLDER9" / "no_id.dcm")
    add(path, "imported", "FOLDER9")
    expected["notes"][str(path.relative_to(root))] = "folder name 'FOLDER9'"
    other_name = ct("P000", "Other^Name", birth="19800202")
    path = write(other_name, root / months[1] / "P000" / "other_name.dcm")
    add(path, "imported", "P000")
    expected["notes"][str(path.relative_to(root))] = "disagrees with stored patient P000"
    return expected
