from rest_framework import serializers

from apps.servers.models import DicomServer


class DicomServerSerializer(serializers.ModelSerializer):
    """The server contract of docs/contracts.md; model validators give the 400s (port range, AE title rules)."""

    class Meta:
        model = DicomServer
        fields = [
            "name", "ae_title", "host", "port", "description", "query_timeout", "download_timeout",
            "retries", "retrieve_method", "max_associations", "dicomweb_url",
        ]


class EchoResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    elapsed_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_null=True)
