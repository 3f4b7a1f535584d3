from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from apps.servers.models import DicomServer, reserved_name_problem
from apps.servers.outbound import check_outbound_url, secret_after_change


def group_names(help_text: str) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="name", many=True, queryset=Group.objects.all(), required=False,
                                        help_text=help_text)


class DicomServerSerializer(serializers.ModelSerializer):
    """The server contract of docs/contracts.md plus who may use the server; model validators give the 400s
    (port range, AE title rules)."""

    query_groups = group_names("Groups that may query this server (when it is not open to everyone).")
    retrieve_groups = group_names("Groups that may retrieve from this server.")
    send_groups = group_names("Groups that may send to this server.")
    dicomweb_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=500,
        help_text="DICOMweb password or token; never returned. A changed dicomweb_url drops the stored one "
                  "unless this request gives it.")

    class Meta:
        model = DicomServer
        fields = [
            "name", "ae_title", "host", "port", "description", "query_timeout", "download_timeout",
            "retries", "retrieve_method", "max_associations", "store_from", "dicomweb_url", "dicomweb_secret",
            "open_to_everyone", "query_groups", "retrieve_groups", "send_groups", "paused", "windows",
        ]

    def validate_dicomweb_url(self, value: str) -> str:
        """The outbound-URL rule when the URL is set or changed (sending checks it again)."""
        if self.instance is not None and value == self.instance.dicomweb_url:
            return value
        try:
            check_outbound_url(value, "dicomweb_url")
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["dicomweb_url"]) from None
        return value

    def update(self, instance, validated_data):
        if "dicomweb_url" in validated_data:
            validated_data["dicomweb_secret"] = secret_after_change(
                instance.dicomweb_url, validated_data["dicomweb_url"], instance.dicomweb_secret,
                validated_data.get("dicomweb_secret"))
        return super().update(instance, validated_data)

    def validate_name(self, value: str) -> str:
        if reserved_name_problem(value):
            raise serializers.ValidationError(reserved_name_problem(value))
        clash = DicomServer.name_clash(value, exclude_pk=self.instance.pk if self.instance else None)
        if clash is not None:
            raise serializers.ValidationError(
                f"Server '{clash.name}' already exists; names are compared without regard to case.")
        return value


class EchoResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    elapsed_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_null=True)
