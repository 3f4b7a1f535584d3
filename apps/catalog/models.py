"""The catalog: one row per DICOM instance the portal holds on disk (retrieved, received from another
portal, imported, a photo kept after sending, stored by DICOMweb), with the identifiers DICOMweb searches
on, where the file is, and the job (and its owner) that brought it. A row never names a file outside the
data folders or the import roots (`roots.py`); pseudonymized instances are catalogued as they are on disk."""
from django.conf import settings
from django.db import models


class Instance(models.Model):
    class Source(models.TextChoices):
        RETRIEVED = "retrieved"
        RECEIVED = "received"  # a delivery from another portal
        IMPORTED = "imported"
        PHOTO = "photo"
        STORED = "stored"  # STOW-RS

    path = models.CharField(max_length=1024, unique=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    job_app = models.CharField(max_length=32, blank=True, default="")
    job_id = models.CharField(max_length=64, blank=True, default="")  # a job's pk, or an upload's UUID
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    filed_at = models.DateTimeField(auto_now=True)

    patient_id = models.CharField(max_length=64, blank=True, default="")
    patient_name = models.CharField(max_length=200, blank=True, default="")
    patient_birth_date = models.CharField(max_length=8, blank=True, default="")
    patient_sex = models.CharField(max_length=16, blank=True, default="")
    study_instance_uid = models.CharField(max_length=64)
    study_date = models.CharField(max_length=8, blank=True, default="")
    study_time = models.CharField(max_length=16, blank=True, default="")
    accession_number = models.CharField(max_length=16, blank=True, default="")
    study_id = models.CharField(max_length=16, blank=True, default="")
    study_description = models.CharField(max_length=64, blank=True, default="")
    referring_physician_name = models.CharField(max_length=200, blank=True, default="")
    series_instance_uid = models.CharField(max_length=64)
    series_number = models.CharField(max_length=12, blank=True, default="")
    series_description = models.CharField(max_length=64, blank=True, default="")
    modality = models.CharField(max_length=16, blank=True, default="")
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.CharField(max_length=12, blank=True, default="")
    rows = models.IntegerField(default=0)
    columns = models.IntegerField(default=0)
    frames = models.IntegerField(default=1)
    transfer_syntax_uid = models.CharField(max_length=64, blank=True, default="")
    size = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["study_instance_uid", "series_instance_uid"], name="catalog_study_series"),
            models.Index(fields=["sop_instance_uid"], name="catalog_sop"),
            models.Index(fields=["owner", "study_instance_uid"], name="catalog_owner_study"),
            models.Index(fields=["patient_id"], name="catalog_patient"),
            models.Index(fields=["owner", "patient_id"], name="catalog_owner_patient"),
            models.Index(fields=["study_date"], name="catalog_date"),
            models.Index(fields=["accession_number"], name="catalog_accession"),
            models.Index(fields=["job_app", "job_id"], name="catalog_job"),
        ]
        permissions = [("store_dicomweb", "Can store instances by DICOMweb (STOW-RS)")]

    def __str__(self):
        return f"{self.sop_instance_uid} ({self.source})"
