"""Photo -> DICOM Secondary Capture: phone photos (JPEG, PNG, BMP, WebP, TIFF, HEIC/HEIF) become SC
Image Storage instances, RGB 8-bit, EXIF orientation applied, long edge limited, one study and one
series per submission.

A photo is recognised by its content, never by its file name, and only by the decoders listed in
PHOTO_FORMATS (Pillow would otherwise hand an EPS file to Ghostscript). Text the user typed is
checked against what DICOM allows (lengths, the backslash delimiter, the character set) before any
pixel is decoded, so a bad field is one clear message and not a corrupt instance at the PACS.
"""
from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO

import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError
from pydicom.charset import python_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)

from apps.dicom.syntaxes import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

pillow_heif.register_heif_opener()
Image.init()  # every plugin registered now: `formats=` below must find WebP and TIFF, not only the preloaded few

PHOTO_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "HEIF")  # JPEG includes MPO (multi-picture, from phones)
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # ~89 MP (Pillow's bomb limit): beyond that it is a bomb, not a photo
TRANSFER_SYNTAXES = {
    ImplicitVRLittleEndian: "Implicit VR Little Endian (uncompressed)",
    ExplicitVRLittleEndian: "Explicit VR Little Endian (uncompressed)",
    JPEGBaseline8Bit: "JPEG Baseline (lossy, about 10x smaller)",
}
CHARSETS = {"ISO_IR 192": "UTF-8 (every script)", "ISO_IR 100": "Latin-1", "GB18030": "Chinese GB18030",
            "": "ASCII only (DICOM default)"}
SEXES = {"M": "M", "F": "F", "O": "O", "U": ""}  # DICOM knows M, F, O; unknown is an empty value
LOSSY_SOURCES = {"JPEG": "ISO_10918_1", "MPO": "ISO_10918_1", "HEIF": "ISO_23008_2"}
JPEG_QUALITY = 90
SOFTWARE = "PACS Portal photo capture"
EXIF_ORIENTATION = 0x0112
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the turn that shows the photo upright
_MODALITY = re.compile(r"^[A-Z0-9_ ]{1,16}$")


class CaptureError(ValueError):
    """Input that cannot become a valid instance. `field` names the form field or file; `message` says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str = ""
    birth_date: date | None = None
    sex: str = ""  # M, F, O or U


@dataclass(frozen=True)
class Exam:
    study_instance_uid: str
    series_instance_uid: str
    when: datetime  # Study, Series and Content date/time; its UTC offset, if any, is kept too
    description: str = ""


@dataclass(frozen=True)
class CaptureOptions:
    modality: str = "OT"
    resize_max: int = 1024  # long edge in pixels; 0 keeps the photo's size
    transfer_syntax: str = ImplicitVRLittleEndian
    charset: str = "ISO_IR 192"
    include_patient_info: bool = True  # name, birth date, sex (the ID always goes)
    include_description: bool = True
    source_ae: str = "PACSPORTAL"


@dataclass
class Photo:
    """A decoded, upright, RGB, resized photo, ready to become an instance."""

    image: Image.Image
    source_format: str  # Pillow's format name, e.g. "JPEG"
    original_size: tuple[int, int]


# --- checking what the user typed ------------------------------------------------------------------

def check_text(field: str, value: str, max_chars: int, charset: str) -> str:
    value = (value or "").strip()
    if len(value) > max_chars:
        raise CaptureError(field, f"{len(value)} characters is too long; DICOM allows at most {max_chars}.")
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise CaptureError(field, "must not contain a backslash or control characters.")
    try:
        value.encode(python_encoding[charset] if charset else "ascii")
    except (UnicodeEncodeError, KeyError):
        raise CaptureError(field, f"cannot be written in the character set {charset or 'ASCII'!r}; "
                                  "use ISO_IR 192 (UTF-8) in the photo settings.") from None
    return value


def check_patient(patient: Patient, charset: str) -> Patient:
    """The patient as DICOM will hold it, or CaptureError naming the first bad field."""
    patient_id = check_text("patientId", patient.patient_id, 64, charset)
    if not patient_id:
        raise CaptureError("patientId", "is required.")
    name = check_text("patientName", patient.name, 64, charset)
    if "=" in name:
        raise CaptureError("patientName", "must not contain '='; in DICOM '=' separates the alphabetic, ideographic "
                                          "and phonetic forms of a name. Write it as Family^Given.")
    if name.count("^") > 4:
        raise CaptureError("patientName", "use at most five '^'-separated parts (Family^Given^Middle^Prefix^Suffix).")
    if patient.birth_date and patient.birth_date > date.today():
        raise CaptureError("birthDate", f"{patient.birth_date.isoformat()} is in the future.")
    sex = (patient.sex or "").strip().upper()
    if sex not in SEXES and sex:
        raise CaptureError("sex", f"{patient.sex!r} is not one of M, F, O, U.")
    return Patient(patient_id, name, patient.birth_date, sex)


def check_options(options: CaptureOptions) -> None:
    if not _MODALITY.match(options.modality or ""):
        raise CaptureError("localModality", f"{options.modality!r} is not a DICOM modality code (e.g. OT, XC).")
    if options.transfer_syntax not in TRANSFER_SYNTAXES:
        raise CaptureError("localTransferSyntax", f"{options.transfer_syntax!r} is not one of "
                                                  f"{', '.join(TRANSFER_SYNTAXES)}.")
    if options.charset not in CHARSETS:
        raise CaptureError("localCharset", f"{options.charset!r} is not one of {', '.join(repr(c) for c in CHARSETS)}.")


# --- reading a photo ---------------------------------------------------------------------------------

def _open(source: str | os.PathLike | BinaryIO) -> Image.Image:
    if hasattr(source, "seek"):
        source.seek(0)
    return Image.open(source, formats=PHOTO_FORMATS)


PHOTO_FORMAT_NAMES = "JPEG, PNG, BMP, WebP, TIFF or HEIC"


# What Pillow raises for a file that is no photo it reads (UnidentifiedImageError, an OSError) or a broken one.
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)


def _unreadable(name: str, exc: Exception, source_format: str = "image") -> CaptureError:
    """The CaptureError for one of _UNREADABLE: not a photo by its content, or a damaged `source_format` file."""
    if isinstance(exc, UnidentifiedImageError):
        return CaptureError(name, f"is not a photo this portal reads ({PHOTO_FORMAT_NAMES}); it is checked by its "
                                  "content, not its name.")
    return CaptureError(name, f"is a damaged or incomplete {source_format} file ({exc}).")


class TooManyPixels(CaptureError):
    """A picture so large that Pillow will not open it (a decompression bomb)."""


def photo_size(source: str | os.PathLike | BinaryIO, name: str) -> tuple[int, int]:
    """Width and height from the header alone (nothing decoded), so a caller can refuse a picture by its
    pixel count before spending memory on it; CaptureError naming `name` if it is no photo we read."""
    try:
        with _open(source) as probe:
            return probe.size
    except Image.DecompressionBombError:  # Pillow's own refusal, for twice its limit: not even the size is read
        raise TooManyPixels(name, f"has more than {2 * MAX_PIXELS // 10**6} megapixels.") from None
    except _UNREADABLE as exc:
        raise _unreadable(name, exc) from None


def read_photo(source: str | os.PathLike | BinaryIO, name: str, *, resize_max: int = 1024,
               max_pixels: int = MAX_PIXELS) -> Photo:
    """Decode a photo by its content: upright (EXIF orientation), RGB 8-bit (alpha flattened onto
    white), sRGB when it carries another ICC profile, long edge at most `resize_max`. Anything that
    is not a whole photo in one of PHOTO_FORMATS, or has more than `max_pixels`, raises CaptureError
    naming `name`. Memory: the decoded picture once, then only what is shrunk from it."""
    source_format = "image"
    try:
        with _open(source) as probe:
            source_format, size = probe.format, probe.size
            if size[0] * size[1] > max_pixels:  # from the header alone, before anything is decoded
                raise CaptureError(name, f"{size[0]}x{size[1]} pixels is more than the {max_pixels / 10**6:g} "
                                         "megapixels a photo may have.")
            probe.verify()  # structure and checksums, before any pixel is decoded
        image = _open(source)
        if resize_max and image.format in ("JPEG", "MPO"):
            # the JPEG decoder can scale by 1/2, 1/4, 1/8 while decoding: far less work for 12 MP
            scale = resize_max / max(size)
            image.draft("RGB", (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))
        image.load()
    except CaptureError:
        raise
    except Image.DecompressionBombError:  # Pillow's own refusal, for twice its limit
        raise CaptureError(name, f"has more than the {MAX_PIXELS // 10**6} megapixels a photo may have.") from None
    except _UNREADABLE as exc:
        raise _unreadable(name, exc, source_format) from None
    icc = image.info.get("icc_profile")
    turn = ORIENTATIONS.get(image.getexif().get(EXIF_ORIENTATION))
    image = _shrink_early(image, resize_max)
    image = _to_rgb(image)
    if resize_max and max(image.size) > resize_max:  # before turning: turning a smaller image is cheaper
        scale = resize_max / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    if turn is not None:
        image = image.transpose(turn)
    if icc:
        image = _to_srgb(image, icc)
    return Photo(image, source_format, size)


def _shrink_early(image: Image.Image, resize_max: int) -> Image.Image:
    """A large picture shrunk by a whole factor (block averages) right after decoding, before any mode
    conversion, which would otherwise copy it at full size once or twice; the final size comes from the
    LANCZOS resize after, from at least twice the target."""
    factor = max(image.size) // (2 * resize_max) if resize_max else 0
    if factor < 2 or image.mode not in ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "I", "F"):
        return image
    return image.reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float greyscale: keep the top 8 bits
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") and values.max() > 255 else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype("uint8"), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Phones tag photos with Display P3 and the like; DICOM viewers assume sRGB for RGB pixels."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return image
        return ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # an unreadable profile: the pixels as they are beat no image at all


# --- building the instance ------------------------------------------------------------------------------

def _dicom_datetime(when: datetime) -> tuple[str, str]:
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def secondary_capture(photo: Photo, patient: Patient, exam: Exam, options: CaptureOptions, *,
                      instance_number: int, sop_instance_uid: str, captured_at: datetime | None = None) -> Dataset:
    """One SC Image Storage dataset (with file meta) for `photo`. `patient` must have passed check_patient."""
    captured_at = captured_at or datetime.now()
    ds = Dataset()
    if options.charset:
        ds.SpecificCharacterSet = options.charset
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop_instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = _dicom_datetime(captured_at)
    # Patient: the ID always; the rest only when the settings allow it (type 2: present, maybe empty)
    share = options.include_patient_info
    ds.PatientName = patient.name if share else ""
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if share and patient.birth_date else ""
    ds.PatientSex = SEXES.get(patient.sex, "") if share else ""
    # Study and series: one of each per submission
    ds.StudyInstanceUID, ds.SeriesInstanceUID = exam.study_instance_uid, exam.series_instance_uid
    ds.StudyDate, ds.StudyTime = _dicom_datetime(exam.when)
    ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    if exam.when.utcoffset() is not None:
        ds.TimezoneOffsetFromUTC = exam.when.strftime("%z")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "", ""
    if options.include_description and exam.description:
        ds.StudyDescription = exam.description
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = options.modality, 1, instance_number
    ds.PatientOrientation, ds.Laterality = "", ""
    # Secondary Capture equipment and image
    ds.Manufacturer = ""
    ds.ConversionType = "WSD"  # workstation: a photo that came through this portal
    ds.SecondaryCaptureDeviceManufacturer = "PACS Portal"
    ds.SecondaryCaptureDeviceSoftwareVersions = SOFTWARE
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = _dicom_datetime(captured_at)
    _pixels(ds, photo, options.transfer_syntax)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, sop_instance_uid
    ds.file_meta.TransferSyntaxUID = options.transfer_syntax
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID  # the portal wrote this file
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta.SourceApplicationEntityTitle = options.source_ae
    return ds


def _pixels(ds: Dataset, photo: Photo, transfer_syntax: str) -> None:
    image = photo.image
    ds.Rows, ds.Columns = image.height, image.width
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    methods = [LOSSY_SOURCES[photo.source_format]] if photo.source_format in LOSSY_SOURCES else []
    if transfer_syntax == JPEGBaseline8Bit:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0")
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        methods.append("ISO_10918_1")
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = image.tobytes()
        ds["PixelData"].VR = "OB"
    if methods:  # the photo (or our JPEG) was lossy-compressed at some point: say so, as DICOM asks
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = methods if len(methods) > 1 else methods[0]


def encode(ds: Dataset) -> bytes:
    """The Part-10 file bytes of a dataset made by secondary_capture."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
