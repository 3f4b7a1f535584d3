from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.delivery.intake import REFUSED, may_deliver
from apps.delivery.models import DeliveryBatch, DeliveryJob, DeliveryTarget
from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.projects.access import ProjectField, ProjectNameField
from apps.servers.models import DicomServer
from apps.servers.outbound import secret_after_change

TOKEN_STAYS = ("The URL now points elsewhere, and the stored token belongs to the old one: it is not kept. "
               "Give the receiving portal's token for the new URL in the same request.")


class DeliveryTargetSerializer(serializers.ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="name", queryset=DicomServer.objects.all(), required=False,
                                          allow_null=True, help_text="DICOM server name (kinds dicom, dicomweb).")
    token = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                  help_text="API token of the receiving portal (kind portal); never returned.")
    has_token = serializers.SerializerMethodField()

    class Meta:
        model = DeliveryTarget
        fields = ["name", "kind", "url", "token", "has_token", "server", "path", "description", "created_at"]
        read_only_fields = ["created_at"]

    def get_has_token(self, target) -> bool:
        return bool(target.token)

    def validate(self, attrs):
        from copy import copy

        from django.core.exceptions import ValidationError

        if self.instance is not None and "url" in attrs:
            kept = secret_after_change(self.instance.url, attrs["url"], self.instance.token, attrs.get("token"))
            if not kept and self.instance.token and attrs.get("kind", self.instance.kind) == DeliveryTarget.Kind.PORTAL:
                raise serializers.ValidationError({"token": [TOKEN_STAYS]})
            attrs["token"] = kept
        target = copy(self.instance) if self.instance else DeliveryTarget()
        for field, value in attrs.items():
            setattr(target, field, value)
        try:
            target.clean()
            if self.instance is None or target.url != self.instance.url or target.kind != self.instance.kind:
                target.check_url()
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
        return attrs


class DeliveryBatchSerializer(JobItemSerializer):
    class Meta(JobItemSerializer.Meta):
        model = DeliveryBatch
        fields = JobItemSerializer.Meta.fields + ["number", "lines", "cases", "files", "bytes", "sent_bytes",
                                                  "zip_path"]
        read_only_fields = fields


class DeliveryJobSerializer(JobSerializer):
    items = DeliveryBatchSerializer(many=True, read_only=True)
    target = serializers.SlugRelatedField(slug_field="name", read_only=True)
    project = ProjectNameField(read_only=True)

    class Meta(JobSerializer.Meta):
        model = DeliveryJob
        fields = JobSerializer.Meta.fields + ["retrieval", "target", "mode", "batch_size", "keep_zip", "clear",
                                              "project"]
        read_only_fields = fields


class DeliveryOptionsSerializer(serializers.Serializer):
    """How to deliver; also the `delivery` object a retrieval may carry. A PACS target needs the
    requesting user's "send" access to its server."""

    target = serializers.SlugRelatedField(slug_field="name", queryset=DeliveryTarget.objects.all())
    mode = serializers.ChoiceField(choices=DeliveryJob.Mode.choices, default=DeliveryJob.Mode.ZIP)
    batch_size = serializers.IntegerField(min_value=1, max_value=10000, default=20)
    keep_zip = serializers.BooleanField(default=False)
    clear = serializers.BooleanField(default=True)
    project = ProjectField(help_text="A research project: what is delivered is de-identified for it.")

    def validate_target(self, target):
        request = self.context.get("request")
        if target.server is not None and request is not None:
            target.server.check_access(request.user, "send")  # a 403 naming the server
        return target


@extend_schema_field(DeliveryOptionsSerializer)
class DeliveryOptionsField(serializers.Field):
    """`delivery` on a retrieval: a JSON object, or its text in a multipart form. Refused unless the
    requesting account may start deliveries."""

    def to_internal_value(self, data):
        import json

        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError('Give a JSON object such as {"target": "SITEB", "mode": "zip", '
                                                  '"batch_size": 20}.') from None
        options = DeliveryOptionsSerializer(data=data, context=self.context)
        if not options.is_valid():
            raise serializers.ValidationError(options.errors)
        request = self.context.get("request")
        if request is None or not may_deliver(request.user):
            raise serializers.ValidationError(REFUSED)
        return dict(options.validated_data)

    def to_representation(self, value):
        return value


class DeliveryRequestSerializer(DeliveryOptionsSerializer):
    retrieval = serializers.IntegerField(help_text="Id of one of your retrieval jobs.")
