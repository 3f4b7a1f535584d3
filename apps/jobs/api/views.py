"""Job API building blocks: JobViewSetMixin (cancel / retry actions) and the progress endpoint the
admin's progress bars poll."""
from django.apps import apps
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.jobs.models import EchoItem, EchoJob, Job


class JobViewSetMixin:
    """Adds POST {id}/cancel/ and POST {id}/retry/ to a job viewset; both answer with the job body."""

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        job = self.get_object()
        job.cancel(user=request.user)
        return Response(self.get_serializer(self.get_object()).data)  # fetched again: items were prefetched

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def retry(self, request, *args, **kwargs):
        job = self.get_object()
        job.retry_failed(user=request.user)
        return Response(self.get_serializer(self.get_object()).data)


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
        from apps.servers.models import DicomServer

        job = EchoJob.for_servers(DicomServer.objects.all(), user=request.user)
        job.start(user=request.user)
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
def job_progress(request, app_label: str, model: str, pk: int):
    """{"id", "status", "completed_at", "progress"} of any job; the admin polls it every 2 s."""
    try:
        job_model = apps.get_model(app_label, model)
    except LookupError:
        raise Http404("No such job type.")
    if not issubclass(job_model, Job):
        raise Http404("No such job type.")
    try:
        job = job_model.objects.get(pk=pk)
    except job_model.DoesNotExist:
        raise Http404("No such job.")
    return Response({"id": job.pk, "status": job.status, "completed_at": job.completed_at,
                     "progress": job.progress()})
