from django.contrib.auth.models import Group
from rest_framework import serializers

from apps.servers.models import DicomServer


def group_names(help_text: str) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="name", many=True, queryset=Group.objects.all(), required=False,
                                        help_text=help_text)


class DicomServerSerializer(serializers.ModelSerializer):
    """The server contract of docs/contracts.md plus who may use the server; model validators give the 400s
    (port range, AE title rules)."""

    query_groups = group_names("Groups that may query this server (when it is not open to everyone).")
    retrieve_groups = group_names("Groups that may retrieve from this server.")
    send_groups = group_names("Groups that may send to this server.")

    class Meta:
        model = DicomServer
        fields = [
            "name", "ae_title", "host", "port", "description", "query_timeout", "download_timeout",
            "retries", "retrieve_method", "max_associations", "store_from", "dicomweb_url",
            "open_to_everyone", "query_groups", "retrieve_groups", "send_groups",
        ]

    def validate_name(self, value: str) -> str:
        clash = DicomServer.name_clash(value, exclude_pk=self.instance.pk if self.instance else None)
        if clash is not None:
            raise serializers.ValidationError(
                f"Server '{clash.name}' already exists; names are compared without regard to case.")
        return value


class EchoResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    elapsed_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_null=True)
