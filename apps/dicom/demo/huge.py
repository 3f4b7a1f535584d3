"""One very large multi-frame instance written to disk without holding it in memory (whole-slide images,
long cine loops and tomosynthesis come this size): the header through pydicom, then the pixel data frame by
frame. The receiver's tests and bench/receiver.py send it to measure what streaming an instance costs."""
from __future__ import annotations

import os
import struct
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MULTIFRAME_CT = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage


def write_huge_instance(path: Path, size_mb: int, *, patient_id: str = "HUGE1", study_uid: str | None = None,
                        series_uid: str | None = None, rows: int = 1024, cols: int = 1024, seed: int = 1
                        ) -> Dataset:
    """A 16-bit multi-frame instance of about `size_mb` MB (whole frames of `rows` x `cols`) at `path`;
    returns its header (PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, ...)."""
    frame = rows * cols * 2
    frames = max(1, size_mb * 1_000_000 // frame)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MULTIFRAME_CT, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, f"HUGE^{patient_id}", "19600101"
    ds.StudyDate, ds.StudyTime, ds.Modality, ds.AccessionNumber = "20240101", "120000", "CT", "HUGEACC"
    ds.InstitutionName, ds.ReferringPhysicianName = "Huge Hospital", "Doctor^Huge"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.BurnedInAnnotation = "NO"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    block = bytearray(os.urandom(1 << 16)) * (frame // (1 << 16) or 1)
    block = block[:frame].ljust(frame, b"\0")
    with open(path, "ab") as out:
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, frames * frame))
        for n in range(frames):
            block[0:4] = struct.pack("<L", n + seed)  # each frame differs
            out.write(block)
    return ds
