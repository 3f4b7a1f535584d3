"""Folder-tree imports: one job per source folder, a scan item that lists the tree and cuts it into
file batches, one item per batch. What the imports produce is the portal's own record of patients and
images (each with its JPEG), kept unique by database constraints so that concurrent imports of one
tree can never file a patient or an image twice."""
from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Count, Sum
from django.utils import timezone

from apps.jobs.models import ItemStatus, Job, JobItem, JobStatus


def new_task_id() -> str:
    return f"dicom-import-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def jpg_root() -> Path:
    return Path(settings.IMPORT_JPG_DIR)


class ImportJob(Job):
    start_permission = "imports.start_import"

    task_id = models.CharField(max_length=64, unique=True, default=new_task_id, editable=False)
    source_path = models.CharField(max_length=1024, help_text="The folder imported (resolved, inside IMPORT_ROOTS).")
    files_found = models.PositiveIntegerField(default=0, help_text="Regular files the scan found.")
    scan_errors = models.JSONField(default=list, blank=True, help_text="Folders or links the scan could not use.")
    run_inline = models.BooleanField(default=False, editable=False,
                                     help_text="Run by `manage.py import_dicom` itself, not by the workers.")

    class Meta(Job.Meta):
        verbose_name = "import job"
        # Jobs are started, not typed in: "start import" takes the place of Django's add permission.
        default_permissions = ("view", "change", "delete")
        permissions = [("start_import", "Can start folder imports")]

    def __str__(self) -> str:
        return self.task_id

    def derive_status(self, counts: dict[str, int]) -> str:
        """Pending until a worker takes the first item (the import API answers a new job "pending");
        partial when some file could not be imported."""
        untouched = counts[ItemStatus.PENDING] and counts[ItemStatus.PENDING] == sum(counts.values())
        if untouched and not self.items.exclude(attempts=0).exists():
            return JobStatus.PENDING
        status = super().derive_status(counts)
        failed_files = self.scan_errors or self.outcomes.filter(outcome=FileOutcome.Outcome.FAILED).exists()
        if status == JobStatus.SUCCEEDED and failed_files:
            return JobStatus.PARTIAL  # a tree with files left behind is never reported as complete
        return status

    def retry_failed(self, user=None) -> int:
        """Retry also resumes a canceled import: its canceled batches run again. Batches are idempotent
        and the dedup keys hold, so nothing is filed twice."""
        self.items.filter(status=ItemStatus.CANCELED).update(status=ItemStatus.FAILED)
        return super().retry_failed(user)

    def counts(self) -> dict[str, int]:
        """The import service's progress counters (their meaning is in the API schema, ImportProgressSerializer)."""
        by_outcome = dict.fromkeys(FileOutcome.Outcome.values, 0)
        for row in self.outcomes.order_by().values("outcome").annotate(n=Sum("files")):
            by_outcome[row["outcome"]] = row["n"]
        patients = (self.outcomes.exclude(outcome=FileOutcome.Outcome.FAILED).exclude(patient=None)
                    .order_by().values("patient").distinct())
        found = patients.count()
        created = patients.filter(patient__first_job=self).count()
        return {
            "total_files_scanned": self.files_found,
            "total_patients_found": found,
            "new_patients_created": created,
            "existing_patients_skipped": found - created,
            "new_images_uploaded": by_outcome[FileOutcome.Outcome.IMPORTED],
            "duplicate_images_skipped": by_outcome[FileOutcome.Outcome.DUPLICATE],
            "failed_files": by_outcome[FileOutcome.Outcome.FAILED],
        }

    def extra_progress(self) -> dict:
        return self.counts()

    def errors(self, limit: int | None = None) -> list[dict]:
        """Every file that could not be imported with its reason, then what the scan could not use,
        then batches that failed as a whole."""
        failed = self.outcomes.filter(outcome=FileOutcome.Outcome.FAILED).order_by("path")
        rows = [{"file": o.path, "reason": o.reason} for o in (failed[:limit] if limit else failed)]
        rows += list(self.scan_errors)
        for item in self.items.filter(status__in=[ItemStatus.FAILED, ItemStatus.TIMED_OUT]).exclude(error=""):
            rows.append({"file": item.describe(), "reason": item.error})
        return rows

    def notes(self, limit: int = 1000) -> list[dict]:
        """Imported files with something to say (folder-name fallback, a header disagreeing with the
        stored patient), the first `limit` in path order."""
        rows = self.outcomes.exclude(note="").order_by("path").values_list("path", "note")[:limit]
        return [{"file": path, "note": note} for path, note in rows]


class ImportItem(JobItem):
    class Kind(models.TextChoices):
        SCAN = "scan"
        FILES = "files"

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FILES)
    number = models.PositiveIntegerField(help_text="0 for the scan, then the batches in tree order.")
    files = models.JSONField(default=list, blank=True, help_text="Absolute paths of the batch's files.")

    class Meta(JobItem.Meta):
        verbose_name = "import item"
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="imports_one_item_per_number")]

    @classmethod
    def instances_finished(cls, since) -> list[tuple]:
        """A batch counts its files; the scan moves none."""
        batches = cls.objects.filter(finished_at__gte=since, kind=cls.Kind.FILES, status="succeeded")
        return [(finished, len(files)) for finished, files in batches.values_list("finished_at", "files")]

    def writes_to(self) -> tuple[str, ...]:
        return ("imports",)  # the JPG renders under IMPORT_JPG_DIR

    def describe(self) -> str:
        if self.kind == self.Kind.SCAN:
            return "scan of the source folder"
        return f"batch {self.number} ({len(self.files)} files from {Path(self.files[0]).name if self.files else '-'})"



class ImportedPatient(models.Model):
    patient_id = models.CharField("PatientID", max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=16, blank=True)
    first_job = models.ForeignKey(ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                  help_text="The import that created this patient.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["patient_id"]
        verbose_name = "imported patient"

    def __str__(self) -> str:
        return self.patient_id


class ImportedImage(models.Model):
    """One image, once. Its two dedup keys are unique in the database: the SOPInstanceUID, and the
    (patient, original file name) pair that the folder-import convention uses."""

    patient = models.ForeignKey(ImportedPatient, on_delete=models.PROTECT, related_name="images")
    original_filename = models.CharField(max_length=255)
    sop_instance_uid = models.CharField("SOPInstanceUID", max_length=64, unique=True)
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    frames = models.PositiveIntegerField(default=1)
    jpg = models.CharField(max_length=255, help_text="The JPEG under IMPORT_JPG_DIR.")
    source_path = models.CharField(max_length=1024, help_text="Where it was imported from.")
    job = models.ForeignKey(ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="images")
    item = models.ForeignKey(ImportItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["patient", "original_filename"]
        verbose_name = "imported image"
        constraints = [models.UniqueConstraint(fields=["patient", "original_filename"],
                                               name="imports_one_image_per_patient_and_file_name")]

    def __str__(self) -> str:
        return f"{self.patient_id}/{self.original_filename}"

    def jpg_path(self) -> Path:
        return jpg_root() / self.jpg


class FileOutcome(models.Model):
    """What one job did with one file, or with `files` unchanged files of one patient at once: the files
    the scan decides by path + size + mtime without opening them (a re-import's every file) are counted,
    not listed, so a re-import writes a row per patient instead of per file. A failed file always has a
    row of its own (its path and reason are the job's errors). The job's counters are sums of `files`."""

    class Outcome(models.TextChoices):
        IMPORTED = "imported"
        DUPLICATE = "duplicate"
        FAILED = "failed"

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="outcomes")
    item = models.ForeignKey(ImportItem, on_delete=models.CASCADE, related_name="outcomes")
    path = models.CharField(max_length=1024, help_text="Relative to the job's source folder.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=500, blank=True, help_text="Why it failed.")
    note = models.CharField(max_length=500, blank=True, help_text="Folder-name fallback, header disagreements.")
    patient = models.ForeignKey(ImportedPatient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    files = models.PositiveIntegerField(default=1, help_text="1, or how many unchanged files this row counts "
                                                             "(path blank).")

    class Meta:
        ordering = ["job", "path"]
        indexes = [models.Index(fields=["job", "outcome"], name="imports_outcome_by_job")]


class KnownFile(models.Model):
    """A file already looked at, by absolute path with its size and mtime: a re-import skips an unchanged
    file without opening it, and reports the same outcome."""

    path = models.CharField(max_length=4096, unique=True)  # PATH_MAX
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    image = models.ForeignKey(ImportedImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    patient = models.ForeignKey(ImportedPatient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    failure = models.CharField(max_length=500, blank=True, help_text="Why it could not be imported.")

    def unchanged(self, stat) -> bool:
        return self.size == stat.st_size and self.mtime_ns == stat.st_mtime_ns


def patients_with_counts():
    return ImportedPatient.objects.annotate(image_count=Count("images"))
