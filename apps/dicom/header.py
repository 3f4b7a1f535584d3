"""Who and what an image file is: patient, SOPInstanceUID, size (ImageHeader), and the rules every reader of
it keeps. The common image's header is read without pydicom (flat_image.py); every other file's from the
dataset pydicom reads (dataset_header.py). No pydicom here: an import's decoder processes start without it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class HeaderError(Exception):
    """A file whose header cannot be used, with the reason in words."""


@dataclass(frozen=True)
class ImageHeader:
    patient_id: str
    patient_name: str
    birth_date: str  # YYYYMMDD or ""
    sex: str
    sop_instance_uid: str
    study_instance_uid: str
    modality: str
    rows: int
    columns: int
    frames: int


def valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and bool(UID_PATTERN.match(value))


def header_from_texts(text_of, rows: int, columns: int, frames: int) -> ImageHeader:
    """The header from `text_of(keyword, limit)` (a value as text, stripped and cut to `limit`), once the
    SOPInstanceUID and the single-valued patient fields are known to be good."""
    birth = text_of("PatientBirthDate", 8)
    return ImageHeader(
        patient_id=text_of("PatientID"), patient_name=text_of("PatientName", 200),
        birth_date=birth if re.fullmatch(r"\d{8}", birth) else "", sex=text_of("PatientSex", 16),
        sop_instance_uid=text_of("SOPInstanceUID", 200), study_instance_uid=text_of("StudyInstanceUID"),
        modality=text_of("Modality", 16), rows=rows, columns=columns, frames=frames)
