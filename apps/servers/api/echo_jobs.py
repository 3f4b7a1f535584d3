"""/api/echo-jobs/: echo every configured server as a job. POST starts one (no body needed); GET shows
its items."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.jobs.api.views import JobViewSetMixin
from apps.servers.intake import start_echo_job
from apps.servers.models import DicomServer, EchoItem, EchoJob


class EchoItemSerializer(JobItemSerializer):
    class Meta(JobItemSerializer.Meta):
        model = EchoItem
        fields = JobItemSerializer.Meta.fields + ["server_name"]
        read_only_fields = fields


class EchoJobSerializer(JobSerializer):
    items = EchoItemSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        model = EchoJob


class EchoJobViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Echo every configured server. POST starts a job (no body needed); GET shows its items."""

    queryset = EchoJob.objects.prefetch_related("items")
    serializer_class = EchoJobSerializer

    @extend_schema(request=None, responses={201: EchoJobSerializer})
    def create(self, request):
        job = start_echo_job(DicomServer.objects.all(), user=request.user)
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)
