from rest_framework import serializers

from apps.delivery.api.serializers import DeliveryOptionsField
from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.retrieval.models import RetrievalItem, RetrievalJob


class RetrievalItemSerializer(JobItemSerializer):
    PatientID = serializers.CharField(source="patient_id")
    StudyDate = serializers.CharField(source="study_date")
    Modality = serializers.CharField(source="modality")
    Server = serializers.CharField(source="server_name")
    StudyInstanceUID = serializers.CharField(source="study_instance_uid")

    class Meta(JobItemSerializer.Meta):
        model = RetrievalItem
        fields = JobItemSerializer.Meta.fields + [
            "line", "PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID", "expected", "instances",
            "bytes", "path"]


class RetrievalJobSerializer(JobSerializer):
    items = RetrievalItemSerializer(many=True, read_only=True)
    deliveries = serializers.PrimaryKeyRelatedField(many=True, read_only=True, help_text="Delivery jobs of its cases.")

    class Meta(JobSerializer.Meta):
        model = RetrievalJob
        fields = JobSerializer.Meta.fields + ["source_name", "timeout", "row_errors", "deliveries"]


class RetrievalRowSerializer(serializers.Serializer):
    PatientID = serializers.CharField(required=False, allow_blank=True, default="")
    StudyDate = serializers.CharField(required=False, allow_blank=True, default="")
    Modality = serializers.CharField(required=False, allow_blank=True, default="")
    Server = serializers.CharField(required=False, allow_blank=True, default="")
    StudyInstanceUID = serializers.CharField(required=False, allow_blank=True, default="")


class RetrievalRequestSerializer(serializers.Serializer):
    """Either multipart `file` (one or more case lists: one job each) or JSON `rows`."""

    file = serializers.FileField(required=False, help_text="A case-list CSV; repeat the field for several.")
    rows = RetrievalRowSerializer(many=True, required=False)
    timeout = serializers.IntegerField(required=False, min_value=1, max_value=86400, allow_null=True)
    server = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="Server for rows that name none (like the CLI's --server).")
    delivery = DeliveryOptionsField(required=False, help_text="Deliver the cases in batches as they are retrieved: "
                                    '{"target", "mode": "zip"|"direct", "batch_size", "keep_zip", "clear"}.')
