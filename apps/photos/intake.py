"""One submission, from form fields and uploaded files to a PhotoUpload whose DICOM files wait on disk:
check every field and every photo first (nothing is sent when one is bad), then write the instances
of one study and one series, in the order the photos came."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydicom.uid import generate_uid

from apps.dicom import capture
from apps.photos.budget import decode_budget
from apps.photos.models import Backend, PhotoSend, PhotoSettings, PhotoUpload
from apps.servers.models import DicomServer

IMAGE_FIELDS = ("images[]", "images")  # the seed's name, and what plain HTML forms and curl -F often send
_BIRTH_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Refused(ValueError):
    """Bad input; the message names the field or file and says what is wrong."""


@dataclass
class Submission:
    patient: capture.Patient
    when: datetime
    description: str
    server: object  # DicomServer
    photos: list[tuple[str, capture.Photo, object]]  # (file name, decoded photo, the uploaded file)


def _birth_date(text: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        if not _BIRTH_DATE.match(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise Refused(f"birthDate: {text!r} is not a date written YYYY-MM-DD.") from None


def _exam_time(text: str) -> datetime:
    """examDateTime as ISO 8601 (its UTC offset kept, if it has one); empty means now, local time."""
    text = (text or "").strip()
    if not text:
        return timezone.localtime()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"examDateTime: {text!r} is not an ISO 8601 date and time (e.g. 2025-03-01T14:30).") from None


def named_server(user, name: str):
    """The configured server called `name` (in any case); Refused when there is none, ServerAccessDenied
    (a 403) when this user may not send to it."""
    server = DicomServer.objects.filter(name__iexact=(name or "").strip()).first()
    if server is None:
        raise Refused(f"server: {name!r} is not a configured DICOM server.")
    server.check_access(user, "send")
    return server


def _server(user, name: str, photo_settings: PhotoSettings):
    name = (name or "").strip()
    if not name:
        if photo_settings.destination is None:
            raise Refused("server: no destination is configured; pick a server, or ask an administrator to "
                          "set one in the photo settings.")
        name = photo_settings.destination.name
    server = named_server(user, name)
    if photo_settings.backend == Backend.DICOMWEB and not server.dicomweb_url:
        raise Refused(f"server: {name} has no DICOMweb URL, and the photo settings send by DICOMweb.")
    return server


def read_submission(user, data, files, photo_settings: PhotoSettings) -> Submission:
    """Every field and photo checked; raises Refused with the first problem (ServerAccessDenied when the
    server is closed to this user)."""
    charset = photo_settings.local_charset
    try:
        capture.check_options(photo_settings.capture_options(settings.DICOM_AE_TITLE))
        patient = capture.check_patient(capture.Patient(
            patient_id=data.get("patientId", ""), name=data.get("patientName", ""),
            birth_date=_birth_date(data.get("birthDate", "")), sex=data.get("sex", "")), charset)
        description = capture.check_text("examDescription", data.get("examDescription", ""), 64, charset)
    except capture.CaptureError as exc:
        raise Refused(str(exc)) from None
    when = _exam_time(data.get("examDateTime", ""))
    server = _server(user, data.get("server", ""), photo_settings)
    uploads = [f for field in IMAGE_FIELDS for f in files.getlist(field)]
    if not uploads:
        raise Refused("images[]: attach at least one photo.")
    sizes = check_pixels(uploads)  # every header first: nothing is decoded when one photo, or all, are too large
    photos = []
    for number, (upload, pixels) in enumerate(zip(uploads, sizes), start=1):
        try:
            with decode_budget().held(pixels):
                photo = capture.read_photo(_source(upload), _label(number, upload),
                                           resize_max=photo_settings.local_resize_max,
                                           max_pixels=settings.PHOTO_MAX_PIXELS)
        except capture.CaptureError as exc:
            raise Refused(str(exc)) from None
        photos.append((upload.name, photo, upload))
    return Submission(patient, when, description, server, photos)


def _source(upload):
    return upload.temporary_file_path() if hasattr(upload, "temporary_file_path") else upload


def _label(number: int, upload) -> str:
    return f"images[{number}] ({upload.name})"


def pixel_limits() -> str:
    return (f"Limits: {settings.PHOTO_MAX_PIXELS / 10**6:g} megapixels per photo (PHOTO_MAX_PIXELS), "
            f"{settings.PHOTO_MAX_TOTAL_PIXELS / 10**6:g} megapixels per upload (PHOTO_MAX_TOTAL_PIXELS).")


def check_pixels(uploads) -> list[int]:
    """Each photo's pixel count, read from its header; Refused naming the photo, or the total, and both limits
    when one photo or all of them together have more pixels than the settings allow."""
    sizes = []
    for number, upload in enumerate(uploads, start=1):
        label = _label(number, upload)
        try:
            width, height = capture.photo_size(_source(upload), label)
        except capture.TooManyPixels as exc:
            raise Refused(f"{exc} {pixel_limits()}") from None
        except capture.CaptureError as exc:
            raise Refused(str(exc)) from None
        if width * height > settings.PHOTO_MAX_PIXELS:
            raise Refused(f"{label}: {width}x{height} pixels ({width * height / 10**6:.1f} megapixels) is more than a "
                          f"photo may have. {pixel_limits()}")
        sizes.append(width * height)
    if sum(sizes) > settings.PHOTO_MAX_TOTAL_PIXELS:
        raise Refused(f"images[]: {len(sizes)} photos of {sum(sizes) / 10**6:.1f} megapixels in all are more than "
                      f"one upload may have; send them in several. {pixel_limits()}")
    return sizes


def create_upload(user, submission: Submission, photo_settings: PhotoSettings) -> PhotoUpload:
    """The job with its one send item, and the DICOM files in PHOTOS_DIR/<job id>/ (with the originals)."""
    options = photo_settings.capture_options(settings.DICOM_AE_TITLE)
    exam = capture.Exam(generate_uid(), generate_uid(), submission.when, submission.description)
    with transaction.atomic():
        upload = PhotoUpload.objects.create(
            created_by=user, dicom_server=submission.server, server_name=submission.server.name,
            backend=photo_settings.backend, patient_id=submission.patient.patient_id,
            study_instance_uid=exam.study_instance_uid, series_instance_uid=exam.series_instance_uid,
            photos=len(submission.photos), keep_files=photo_settings.keep_files_on_success,
            timeout_seconds=photo_settings.timeout_seconds, verify_tls=photo_settings.dicomweb_verify_tls,
            description=f"{len(submission.photos)} photo(s) to {submission.server.name}")
        folder = Path(settings.PHOTOS_DIR) / str(upload.pk)
        upload.folder = str(folder)
        upload.save(update_fields=["folder"])
        item = PhotoSend.objects.create(job=upload)
    (folder / "originals").mkdir(parents=True, exist_ok=True)
    instances = []
    for number, (name, photo, uploaded) in enumerate(submission.photos, start=1):
        # file names on disk are ours: the sender's name is kept only as text
        original = folder / "originals" / f"{number:03d}{_safe_suffix(name)}"
        _keep_original(uploaded, original)
        sop_uid = generate_uid()
        ds = capture.secondary_capture(photo, submission.patient, exam, options, instance_number=number,
                                       sop_instance_uid=sop_uid)
        path = folder / f"{number:03d}.dcm"
        path.write_bytes(capture.encode(ds))
        instances.append({"index": number, "file": name[:200], "sopInstanceUID": sop_uid, "path": str(path),
                          "original": str(original), "status": "pending", "message": ""})
    item.result = {"instances": instances}
    item.save(update_fields=["result"])
    return upload


def _safe_suffix(name: str) -> str:
    suffix = os.path.splitext(name or "")[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def _keep_original(uploaded, destination: Path) -> None:
    if hasattr(uploaded, "temporary_file_path"):
        shutil.move(uploaded.temporary_file_path(), destination)  # Django's cleanup tolerates the move
    else:
        uploaded.seek(0)
        with open(destination, "wb") as out:
            shutil.copyfileobj(uploaded, out)
