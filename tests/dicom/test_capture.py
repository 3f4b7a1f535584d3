"""apps/dicom/capture.py without Django: every accepted format, orientation, alpha, resize, refusals
by content, the user's text against DICOM's rules, and the output checked by dicom3tools' dciodvfy
and DCMTK's dcmdump."""
import io
import struct
import subprocess
import zlib
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from apps.dicom import capture
from tests.photos import images

EXAM = capture.Exam(generate_uid(), generate_uid(), datetime(2025, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=9))),
                    "피부 사진")
PATIENT = capture.Patient("P-001", "홍^길동", date(1990, 1, 15), "F")


def instance(photo, options=capture.CaptureOptions(), patient=PATIENT, number=1):
    ds = capture.secondary_capture(photo, capture.check_patient(patient, options.charset), EXAM, options,
                                   instance_number=number, sop_instance_uid=generate_uid())
    return pydicom.dcmread(io.BytesIO(capture.encode(ds)))


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("WEBP", "webp"),
                                         ("TIFF", "tif"), ("HEIF", "heic")])
def test_every_phone_format_is_read_by_content_whatever_its_name(tmp_path, fmt, suffix):
    path = images.plain(tmp_path / f"photo.{suffix}", fmt, size=(80, 60))
    misnamed = tmp_path / "photo.dat"
    misnamed.write_bytes(path.read_bytes())
    photo = capture.read_photo(misnamed, "photo.dat")
    assert photo.source_format == fmt and photo.image.mode == "RGB" and photo.image.size == (80, 60)
    assert images.near(photo.image.getpixel((40, 30)), images.BLUE)


def test_exif_orientation_is_applied(tmp_path):
    photo = capture.read_photo(images.rotated_jpeg(tmp_path / "r.jpg"), "r.jpg")
    assert photo.image.size == (200, 400) and photo.original_size == (400, 200)
    assert images.near(photo.image.getpixel((100, 20)), images.RED)
    assert images.near(photo.image.getpixel((100, 380)), images.BLUE)


def test_alpha_is_flattened_onto_white_and_the_long_edge_resized(tmp_path):
    photo = capture.read_photo(images.large_png_with_alpha(tmp_path / "a.png", 1200, 800), "a.png", resize_max=600)
    assert photo.image.size == (600, 400) and photo.image.mode == "RGB"
    assert images.near(photo.image.getpixel((50, 200)), images.WHITE)
    assert images.near(photo.image.getpixel((550, 200)), images.GREEN)


def test_a_large_jpeg_is_decoded_small_and_resized_exactly(tmp_path):
    path = tmp_path / "12mp.jpg"
    Image.fromarray(images.halves(4000, 3000, images.RED, images.BLUE)).save(path, quality=90)
    photo = capture.read_photo(path, "12mp.jpg", resize_max=1024)
    assert photo.image.size == (1024, 768) and photo.original_size == (4000, 3000)
    assert images.near(photo.image.getpixel((10, 10)), images.RED)


def test_sixteen_bit_greyscale_keeps_its_contrast(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    photo = capture.read_photo(path, "ramp16.png")
    row = np.asarray(photo.image)[8, :, 0]
    assert row[0] < 5 and row[-1] > 250 and photo.image.mode == "RGB"


@pytest.mark.parametrize("content, expected", [
    (b"This is a text file with a photo's name.\n", "not a photo this portal reads"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a photo this portal reads"),  # never Ghostscript
    (b"GIF89a" + b"\0" * 20, "not a photo this portal reads"),
])
def test_files_that_are_not_photos_are_refused_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(content)
    with pytest.raises(capture.CaptureError) as refused:
        capture.read_photo(path, "images[1] (IMG_0001.jpg)")
    assert refused.value.field == "images[1] (IMG_0001.jpg)" and expected in refused.value.message


def test_a_truncated_photo_is_refused_as_damaged(tmp_path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(capture.CaptureError, match="damaged or incomplete PNG"):
        capture.read_photo(cut, "cut.png")


@pytest.mark.parametrize("side", [10000, 20000])  # 100 MP: over our limit; 400 MP: over Pillow's own too
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"  # 57 bytes that claim side x side pixels
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    with pytest.raises(capture.CaptureError, match="megapixels"):
        capture.read_photo(path, "bomb.png")


@pytest.mark.parametrize("patient, charset, field", [
    (capture.Patient(""), "ISO_IR 192", "patientId"),
    (capture.Patient("A" * 65), "ISO_IR 192", "patientId"),
    (capture.Patient("P\\1"), "ISO_IR 192", "patientId"),
    (capture.Patient("P1", "王大明"), "ISO_IR 100", "patientName"),
    (capture.Patient("P1", "A^B^C^D^E^F"), "ISO_IR 192", "patientName"),
    (capture.Patient("P1", birth_date=date.today() + timedelta(days=2)), "ISO_IR 192", "birthDate"),
    (capture.Patient("P1", sex="X"), "ISO_IR 192", "sex"),
])
def test_patient_fields_follow_dicom_rules(patient, charset, field):
    with pytest.raises(capture.CaptureError) as refused:
        capture.check_patient(patient, charset)
    assert refused.value.field == field


def test_the_instance_carries_the_patient_the_exam_and_our_ae(tmp_path):
    photo = capture.read_photo(images.rotated_jpeg(tmp_path / "r.jpg"), "r.jpg")
    ds = instance(photo, capture.CaptureOptions(modality="XC", source_ae="PHOTOTEST"), number=3)
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "홍^길동"
    assert (ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == ("P-001", "19900115", "F")
    assert (ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.ContentTime) == ("20250301", "143000", "20250301", "143000")
    assert ds.TimezoneOffsetFromUTC == "+0900" and ds.StudyDescription == "피부 사진"
    assert (ds.Modality, ds.InstanceNumber, ds.ConversionType) == ("XC", 3, "WSD")
    assert ds.file_meta.SourceApplicationEntityTitle == "PHOTOTEST"
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.pixel_array.shape == (400, 200, 3)


def test_the_flags_keep_patient_details_and_description_out():
    photo = capture.Photo(Image.new("RGB", (8, 8)), "PNG", (8, 8))
    ds = instance(photo, capture.CaptureOptions(include_patient_info=False, include_description=False))
    assert ds.PatientID == "P-001" and ds.PatientName == "" and ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert "StudyDescription" not in ds and "LossyImageCompression" not in ds  # a PNG was never lossy


def test_unknown_sex_is_an_empty_value_as_dicom_wants():
    photo = capture.Photo(Image.new("RGB", (8, 8)), "PNG", (8, 8))
    assert instance(photo, patient=capture.Patient("P1", sex="U")).PatientSex == ""


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit])
def test_dciodvfy_finds_no_error_and_dcmdump_reads_the_name(tmp_path, transfer_syntax):
    photo = capture.read_photo(images.large_png_with_alpha(tmp_path / "a.png", 640, 480), "a.png")
    ds = capture.secondary_capture(photo, capture.check_patient(PATIENT, "ISO_IR 192"), EXAM,
                                   capture.CaptureOptions(transfer_syntax=transfer_syntax), instance_number=1,
                                   sop_instance_uid=generate_uid())
    path = tmp_path / "sc.dcm"
    path.write_bytes(capture.encode(ds))
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    report = checked.stdout + checked.stderr
    assert "SCImage" in report  # dciodvfy recognised the IOD
    assert [line for line in report.splitlines() if line.startswith("Error")] == [], report
    dumped = subprocess.run(["dcmdump", "+U8", str(path)], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    assert "(0010,0010) PN [홍^길동]" in dumped.stdout
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == transfer_syntax
    assert images.near(back.pixel_array[240, 600], images.GREEN, 50)  # decodable, pixels where they belong


def test_options_are_checked():
    with pytest.raises(capture.CaptureError, match="localModality"):
        capture.check_options(capture.CaptureOptions(modality="ot"))
    with pytest.raises(capture.CaptureError, match="localTransferSyntax"):
        capture.check_options(capture.CaptureOptions(transfer_syntax="1.2.3"))
    with pytest.raises(capture.CaptureError, match="localCharset"):
        capture.check_options(capture.CaptureOptions(charset="Shift_JIS"))
