from django.urls import reverse
from rest_framework import serializers

from apps.imports.models import ImportedImage, ImportedPatient, ImportJob

ERRORS_LISTED = 1000  # a status poll stays small even for a tree of broken files


class ImportRequestSerializer(serializers.Serializer):
    source_path = serializers.CharField(max_length=1024, help_text="A folder inside one of IMPORT_ROOTS "
                                        "(symlinks and `..` are resolved before the check).")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ImportStartedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()
    started_at = serializers.DateTimeField()


class ImportProgressSerializer(serializers.Serializer):
    total_files_scanned = serializers.IntegerField(help_text="Every regular file found under source_path.")
    total_patients_found = serializers.IntegerField(
        help_text="Distinct patients (by PatientID) among this job's importable files, duplicates included.")
    new_patients_created = serializers.IntegerField(help_text="Of those, patients this job created.")
    existing_patients_skipped = serializers.IntegerField(help_text="Of those, patients that existed before.")
    new_images_uploaded = serializers.IntegerField(help_text="Images this job stored (with their JPEG).")
    duplicate_images_skipped = serializers.IntegerField(
        help_text="Files whose (PatientID + original file name) or SOPInstanceUID was already imported, "
                  "earlier in this job included: a renamed copy is a duplicate.")
    failed_files = serializers.IntegerField(
        help_text="Files that could not be imported (not DICOM, truncated, no pixel data, undecodable); "
                  "each is in `errors` with its reason.")


class FileErrorSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="Path relative to source_path.")
    reason = serializers.CharField()


class ImportStatusSerializer(serializers.ModelSerializer):
    """The import service's status body, key for key (the notes are in `stats`)."""

    progress = serializers.SerializerMethodField()
    errors = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = ["task_id", "status", "source_path", "description", "created_at", "started_at", "completed_at",
                  "duration_seconds", "progress", "errors"]
        read_only_fields = fields

    def get_progress(self, job) -> ImportProgressSerializer:
        return job.counts()

    def get_errors(self, job) -> FileErrorSerializer(many=True):
        """The first ERRORS_LISTED failed files in path order (failed_files counts them all; stats groups
        every one by reason)."""
        return job.errors(limit=ERRORS_LISTED)

    def get_duration_seconds(self, job) -> float | None:
        if job.completed_at and job.started_at:
            return round((job.completed_at - job.started_at).total_seconds(), 3)
        return None


class PatientSerializer(serializers.ModelSerializer):
    image_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = ImportedPatient
        fields = ["id", "patient_id", "name", "birth_date", "sex", "image_count"]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    patient_id = serializers.CharField(source="patient.patient_id", read_only=True)
    jpg_url = serializers.SerializerMethodField()

    class Meta:
        model = ImportedImage
        fields = ["id", "patient_id", "original_filename", "sop_instance_uid", "width", "height", "jpg_url",
                  "study_instance_uid", "modality", "frames", "created_at"]
        read_only_fields = fields

    def get_jpg_url(self, image) -> str:
        url = reverse("imported-image-jpg", args=[image.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url
