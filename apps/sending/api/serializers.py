from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.projects.access import ProjectField, ProjectNameField, require_project
from apps.sending.models import Inbox, SendItem, SendJob
from apps.servers.models import DicomServer


class SendItemSerializer(JobItemSerializer):
    class Meta(JobItemSerializer.Meta):
        model = SendItem
        fields = JobItemSerializer.Meta.fields + ["batch", "files", "sent", "warnings", "skipped", "not_stored",
                                                  "bytes"]
        read_only_fields = fields


class SendJobSerializer(JobSerializer):
    items = SendItemSerializer(many=True, read_only=True)
    servers = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    inbox = serializers.SlugRelatedField(slug_field="name", read_only=True)
    error = serializers.CharField(source="error_summary", read_only=True)
    project = ProjectNameField(read_only=True)
    source_path = serializers.CharField(source="shown_source_path", read_only=True)
    folder = serializers.CharField(source="shown_folder", read_only=True)
    archive_path = serializers.CharField(source="shown_archive_path", read_only=True)

    class Meta(JobSerializer.Meta):
        model = SendJob
        fields = JobSerializer.Meta.fields + ["servers", "method", "source_path", "uploaded", "inbox", "folder",
                                              "archive_path", "error", "log", "project"]
        read_only_fields = fields


class SendRequestSerializer(serializers.Serializer):
    """JSON `{"servers": [...], "path": "..."}`, or multipart `files` (several) + `servers`."""

    servers = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    path = serializers.CharField(required=False, allow_blank=True, default="")
    method = serializers.ChoiceField(choices=SendJob.Method.choices, default=SendJob.Method.C_STORE)
    files = serializers.ListField(child=serializers.FileField(), required=False, default=list)
    project = ProjectField()

    def validate_servers(self, names):
        names = [n.strip() for name in names for n in name.split(",") if n.strip()]
        found = {s.name: s for s in DicomServer.objects.filter(name__in=names)}
        unknown = [n for n in names if n not in found]
        if unknown:
            raise serializers.ValidationError(f"Unknown server(s): {', '.join(unknown)}.")
        return [found[n] for n in dict.fromkeys(names)]

    def validate(self, data):
        if bool(data["path"].strip()) == bool(data["files"]):
            raise serializers.ValidationError("Give either 'path' (a file or folder inside IMPORT_ROOTS) or "
                                              "uploaded 'files', not both or neither.")
        if data["method"] == SendJob.Method.STOW_RS:
            missing = [s.name for s in data["servers"] if not s.dicomweb_url]
            if missing:
                raise serializers.ValidationError(f"STOW-RS needs a DICOMweb URL; none set for {', '.join(missing)}.")
        return data


class InboxSerializer(serializers.ModelSerializer):
    destinations = serializers.SlugRelatedField(slug_field="name", many=True, queryset=DicomServer.objects.all())
    project = ProjectNameField()

    class Meta:
        model = Inbox
        fields = ["name", "path", "pattern", "destinations", "debounce_seconds", "archive_path", "error_path",
                  "project", "enabled", "disabled_reason", "unmatched", "created_at", "updated_at"]
        read_only_fields = ["disabled_reason", "unmatched", "created_at", "updated_at"]

    def validate(self, data):
        destinations = data.pop("destinations", None)
        candidate = Inbox(**{**({f.name: getattr(self.instance, f.name) for f in Inbox._meta.concrete_fields}
                                if self.instance else {}), **data})
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        if destinations is not None:
            if not destinations:
                raise serializers.ValidationError({"destinations": "Name at least one server."})
            data["destinations"] = destinations
        elif self.instance is None:
            raise serializers.ValidationError({"destinations": "Name at least one server."})
        else:
            destinations = list(self.instance.destinations.all())
        # whoever changes an inbox, in any way, must be allowed to send what it sends: identified data too
        require_project(self.context["request"].user,
                        data["project"] if "project" in data else getattr(self.instance, "project", None))
        for server in destinations:
            server.check_access(self.context["request"].user, "send")
        return data


class InboxRunSerializer(serializers.ModelSerializer):
    files_sent = serializers.SerializerMethodField()
    skipped = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()
    error = serializers.CharField(source="error_summary", read_only=True)
    folder = serializers.CharField(source="shown_folder", read_only=True)
    archive_path = serializers.CharField(source="shown_archive_path", read_only=True)

    class Meta:
        model = SendJob
        fields = ["id", "folder", "status", "created_at", "started_at", "completed_at", "files_sent", "skipped",
                  "warnings", "archive_path", "error", "log"]
        read_only_fields = fields

    def _progress(self, job) -> dict:
        if not hasattr(job, "_progress_cache"):
            job._progress_cache = job.progress()
        return job._progress_cache

    def get_files_sent(self, job) -> int:
        return self._progress(job)["sent"]

    def get_skipped(self, job) -> int:
        return self._progress(job)["skipped"]

    def get_warnings(self, job) -> int:
        return self._progress(job)["warnings"]
