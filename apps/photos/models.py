"""Photos to PACS: the settings (one row, read fresh on every upload), and one job per submission
whose single item sends the submission's instances to the destination in one association or one
STOW-RS request."""
from __future__ import annotations

import shutil

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from apps.catalog.filing import forget_under
from apps.dicom.capture import CHARSETS, TRANSFER_SYNTAXES, CaptureOptions
from apps.jobs.models import Job, JobItem

MAX_TIMEOUT_SECONDS = 100  # the web server ends a request after 120 s; the answer must come before


class Backend(models.TextChoices):
    CSTORE = "cstore", "C-STORE (DICOM network)"
    DICOMWEB = "dicomweb", "DICOMweb STOW-RS"


def destination_problem(backend: str, server) -> str:
    """Why `server` cannot take photos by `backend`, or ""."""
    if backend == Backend.DICOMWEB and server is not None and not server.dicomweb_url:
        return f"{server.name} has no DICOMweb URL; add one to the server or send by C-STORE."
    return ""


class PhotoSettings(models.Model):
    """The photo page's settings. One row (pk 1); GET/PUT /api/settings and the admin edit it."""

    backend = models.CharField(max_length=8, choices=Backend.choices, default=Backend.CSTORE)
    destination = models.ForeignKey("servers.DicomServer", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", help_text="Where photos go unless the sender picks another.")
    local_modality = models.CharField(max_length=16, default="OT", validators=[RegexValidator(
        r"^[A-Z0-9_ ]{1,16}$", "A DICOM modality code: capitals and digits, e.g. OT or XC.")])
    local_resize_max = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(64), MaxValueValidator(8192)],
        help_text="Long edge of the stored image, in pixels.")
    local_transfer_syntax = models.CharField(max_length=64, default="1.2.840.10008.1.2",
                                             choices=[(uid, f"{name} {uid}") for uid, name in TRANSFER_SYNTAXES.items()])
    local_charset = models.CharField(max_length=16, default="ISO_IR 192", blank=True,
                                     choices=[(code, f"{code or '(none)'}: {name}") for code, name in CHARSETS.items()])
    include_patient_info_except_id = models.BooleanField(
        default=True, help_text="Write name, birth date and sex into the images (the patient ID always goes).")
    include_exam_description = models.BooleanField(default=True, help_text="Write the description as Study Description.")
    keep_files_on_success = models.BooleanField(
        default=False, help_text="Keep the uploaded photos and their DICOM files after the PACS stored them.")
    max_upload_mb = models.PositiveIntegerField(default=20, validators=[MinValueValidator(1), MaxValueValidator(200)],
                                                help_text="Largest photo accepted, in MB.")
    theme_dark = models.BooleanField(default=True, help_text="The photo page starts in the dark theme.")
    timeout_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(MAX_TIMEOUT_SECONDS)],
        help_text="Longest wait for the PACS: connecting, each answer, or the whole STOW-RS request.")
    dicomweb_verify_tls = models.BooleanField("verify DICOMweb TLS certificates", default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "photo settings"

    def __str__(self) -> str:
        return "Photo settings"

    def clean(self):
        problem = destination_problem(self.backend, self.destination)
        if problem:
            raise ValidationError({"destination": problem})

    def save(self, *args, **kwargs):
        self.pk = 1  # there is only one
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> PhotoSettings:
        return cls.objects.select_related("destination").get_or_create(pk=1)[0]

    def capture_options(self, source_ae: str) -> CaptureOptions:
        return CaptureOptions(modality=self.local_modality, resize_max=self.local_resize_max,
                              transfer_syntax=self.local_transfer_syntax, charset=self.local_charset,
                              include_patient_info=self.include_patient_info_except_id,
                              include_description=self.include_exam_description, source_ae=source_ae)


class PhotoUpload(Job):
    """One submission from the photo page or POST /api/studies: one study, one series."""

    dicom_server = models.ForeignKey("servers.DicomServer", null=True, on_delete=models.SET_NULL, related_name="+")
    server_name = models.CharField(max_length=32, help_text="Kept so the upload still reads well if the server goes.")
    backend = models.CharField(max_length=8, choices=Backend.choices)
    patient_id = models.CharField("PatientID", max_length=64)
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64)
    series_instance_uid = models.CharField("SeriesInstanceUID", max_length=64)
    photos = models.PositiveIntegerField(default=0)
    folder = models.CharField(max_length=500, blank=True,
                              help_text="Where the photos and their DICOM files wait until the PACS has them all.")
    keep_files = models.BooleanField(default=False)
    timeout_seconds = models.PositiveIntegerField(default=30)
    verify_tls = models.BooleanField(default=True)

    start_permission = "photos.send_photos"

    class Meta(Job.Meta):
        verbose_name = "photo upload"
        # Uploads are started by sending photos, not typed in: "send photos" takes the place of "add".
        default_permissions = ("view", "change", "delete")
        permissions = [("send_photos", "Can send photos to a PACS")]

    def __str__(self) -> str:
        return f"Photo upload #{self.pk}"

    def extra_progress(self) -> dict:
        item = self.items.first()
        instances = (item.result or {}).get("instances", []) if item else []
        return {"photos": self.photos, "stored": sum(1 for i in instances if i["status"] == "success")}

    def remove_files(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            forget_under(self.folder)


class PhotoSend(JobItem):
    """Sends the upload's instances; result["instances"] holds each one's index, file, SOP Instance UID,
    DICOM path and status ("pending", "success", "failed"). Re-running sends only those not stored."""

    job = models.ForeignKey(PhotoUpload, on_delete=models.CASCADE, related_name="items")

    class Meta(JobItem.Meta):
        verbose_name = "photo send"

    def server(self):
        return self.job.dicom_server

    def direction(self) -> str:
        return "send"

    def instances(self) -> list[dict]:
        return self.result.setdefault("instances", [])

    @classmethod
    def instances_finished(cls, since) -> list[tuple]:
        """An upload counts the photos the PACS stored."""
        sends = cls.objects.filter(finished_at__gte=since).values_list("finished_at", "result")
        return [(finished, sum(1 for i in (result or {}).get("instances", []) if i.get("status") == "success"))
                for finished, result in sends]
