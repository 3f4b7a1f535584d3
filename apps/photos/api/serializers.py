from rest_framework import serializers

from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.photos.models import PhotoSend, PhotoSettings, PhotoUpload, destination_problem
from apps.servers.models import DicomServer

# The settings' API names (the photo page's contract) and the model fields behind them.
SETTINGS_KEYS = {
    "backend": "backend",
    "destination": "destination",
    "localModality": "local_modality",
    "localResizeMax": "local_resize_max",
    "localTransferSyntax": "local_transfer_syntax",
    "localCharset": "local_charset",
    "includePatientInfoExceptId": "include_patient_info_except_id",
    "includeExamDescription": "include_exam_description",
    "keepFilesOnSuccess": "keep_files_on_success",
    "maxUploadMb": "max_upload_mb",
    "themeDark": "theme_dark",
    "timeoutSeconds": "timeout_seconds",
    "dicomwebVerifyTls": "dicomweb_verify_tls",
}
FIELD_KEYS = {field: key for key, field in SETTINGS_KEYS.items()}


class PhotoSettingsSerializer(serializers.ModelSerializer):
    destination = serializers.SlugRelatedField(slug_field="name", queryset=DicomServer.objects.all(),
                                               allow_null=True, required=False)

    class Meta:
        model = PhotoSettings
        fields = list(SETTINGS_KEYS.values())

    def validate(self, attrs):
        backend = attrs.get("backend", self.instance.backend)
        destination = attrs.get("destination", self.instance.destination)
        problem = destination_problem(backend, destination)
        if problem:
            raise serializers.ValidationError({"destination": problem})
        return attrs

    def to_representation(self, instance):
        return {FIELD_KEYS[field]: value for field, value in super().to_representation(instance).items()}


class PhotoSendSerializer(JobItemSerializer):
    class Meta(JobItemSerializer.Meta):
        model = PhotoSend


class PhotoUploadSerializer(JobSerializer):
    items = PhotoSendSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        model = PhotoUpload
        fields = JobSerializer.Meta.fields + ["server_name", "backend", "patient_id", "study_instance_uid",
                                              "series_instance_uid", "photos"]
        read_only_fields = fields
