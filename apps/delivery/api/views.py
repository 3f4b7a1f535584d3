from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.audit import record
from apps.delivery.api.serializers import DeliveryJobSerializer, DeliveryRequestSerializer, DeliveryTargetSerializer
from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.jobs.access import visible_jobs
from apps.jobs.api.views import JobViewSetMixin
from apps.projects.access import require_project
from apps.retrieval.models import RetrievalJob

STAFF_ONLY = ("Only staff may create delivery targets or change where one sends (kind, url, server, path): "
              "a target decides where patients' images and a stored token go.")


class DeliveryTargetViewSet(viewsets.ModelViewSet):
    """Delivery targets by name: `portal` (url + write-only token), `dicom`/`dicomweb` (a server), `folder` (path).
    Creating one, or changing where it sends, needs the model permission and a staff account; changing
    only its description or token needs the change permission."""

    queryset = DeliveryTarget.objects.select_related("server")
    serializer_class = DeliveryTargetSerializer
    lookup_field = "name"

    def perform_create(self, serializer):
        if not self.request.user.is_staff:
            raise PermissionDenied(STAFF_ONLY)
        target = serializer.save()
        record(self.request.user, "delivery_target.created", target, name=target.name, kind=target.kind)

    def perform_update(self, serializer):
        redirected = [f for f in DeliveryTarget.DESTINATION_FIELDS
                      if f in serializer.validated_data and serializer.validated_data[f] != getattr(serializer.instance, f)]
        if redirected and not self.request.user.is_staff:
            raise PermissionDenied(f"{STAFF_ONLY} This request changes {', '.join(redirected)}.")
        target = serializer.save()
        record(self.request.user, "delivery_target.changed", target, name=target.name, kind=target.kind)

    def perform_destroy(self, instance):
        record(self.request.user, "delivery_target.deleted", instance, name=instance.name)
        instance.delete()


class DeliveryJobViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deliveries: the cases of a retrieval, `batch_size` per batch, to a target as zips or files."""

    queryset = DeliveryJob.objects.select_related("target").prefetch_related("items")
    serializer_class = DeliveryJobSerializer

    @extend_schema(request=DeliveryRequestSerializer, responses={201: DeliveryJobSerializer})
    def create(self, request):
        body = DeliveryRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        retrieval = visible_jobs(RetrievalJob.objects.all(), request.user).filter(pk=data["retrieval"]).first()
        if retrieval is None:
            return Response({"retrieval": [f"You have no retrieval job #{data['retrieval']}."]},
                            status=status.HTTP_400_BAD_REQUEST)
        if data["project"] and retrieval.project_id and data["project"].pk != retrieval.project_id:
            return Response({"project": [f"Retrieval job #{retrieval.pk} filed its files de-identified for project "
                                         f"{retrieval.project}; they cannot be de-identified again for "
                                         f"{data['project']}."]}, status=status.HTTP_400_BAD_REQUEST)
        # files a project's retrieval filed are de-identified already; others need a project or the permission
        require_project(request.user, data["project"] or retrieval.project)
        job = DeliveryJob.for_retrieval(retrieval, data["target"], user=request.user, mode=data["mode"],
                                        batch_size=data["batch_size"], keep_zip=data["keep_zip"], clear=data["clear"],
                                        project=data["project"])
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)
