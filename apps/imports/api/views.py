"""Import API (the contract of the batch import service it replaces): start an import, follow it, and
browse what it filed."""
from django.db.models import Count
from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, renderers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.imports.api.serializers import (
    ImageSerializer,
    ImportRequestSerializer,
    ImportStartedSerializer,
    ImportStatusSerializer,
    PatientSerializer,
)
from apps.imports.intake import start_import
from apps.imports.models import ImportedImage, ImportedPatient, ImportJob, jpg_root
from apps.imports.scan import SourceRefused
from apps.imports.stats import job_stats
from apps.jobs.api.views import JobViewSetMixin
from pacsportal.permissions import model_permission

STARTED_MESSAGE = "DICOM import task started; follow its progress at the status endpoint."


class ImportJobViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       viewsets.GenericViewSet):
    """Folder-tree imports. POST starts one ("start import" permission); `{task_id}/status` and
    `{task_id}/stats` follow it. A user sees their own imports only (another's is a 404)."""

    queryset = ImportJob.objects.all()
    serializer_class = ImportStatusSerializer
    lookup_field = "task_id"
    lookup_value_regex = r"[A-Za-z0-9-]+"

    def get_action_permissions(self):
        view = [model_permission(ImportJob, "view")]
        return {**super().get_action_permissions(), "task_status": view, "stats": view}

    @extend_schema(request=ImportRequestSerializer, responses={201: ImportStartedSerializer})
    def create(self, request):
        body = ImportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            job = start_import(body.validated_data["source_path"], body.validated_data["description"],
                               user=request.user)
        except SourceRefused as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"task_id": job.task_id, "status": job.status, "message": STARTED_MESSAGE,
                         "started_at": job.started_at}, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"], url_path="status")
    def task_status(self, request, task_id=None):
        """The import service's status body, key for key."""
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def stats(self, request, task_id=None):
        """The status counters, per-patient numbers and the failure reasons grouped."""
        return Response(job_stats(self.get_object()))


class ByPatientId:
    """`?patient_id=` narrows the list to one patient (`patient_id_lookup` names the field)."""

    patient_id_lookup = "patient_id"

    @extend_schema(parameters=[OpenApiParameter("patient_id", str, description="Only this PatientID.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        patient_id = self.request.query_params.get("patient_id")
        return queryset if patient_id is None else queryset.filter(**{self.patient_id_lookup: patient_id})


class PatientViewSet(ByPatientId, viewsets.ReadOnlyModelViewSet):
    """Imported patients; `?patient_id=` picks one."""

    queryset = ImportedPatient.objects.annotate(image_count=Count("images")).order_by("patient_id")
    serializer_class = PatientSerializer


class JPEGRenderer(renderers.BaseRenderer):
    media_type = "image/jpeg"
    format = "jpg"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class ImageViewSet(ByPatientId, viewsets.ReadOnlyModelViewSet):
    """Imported images; `?patient_id=` lists one patient's. `jpg_url` serves the JPEG (login needed)."""

    queryset = ImportedImage.objects.select_related("patient").order_by("patient__patient_id", "original_filename")
    serializer_class = ImageSerializer
    patient_id_lookup = "patient__patient_id"

    @extend_schema(responses={(200, "image/jpeg"): bytes})
    @action(detail=True, methods=["get"], renderer_classes=[JPEGRenderer, renderers.JSONRenderer],
            url_name="jpg")
    def jpg(self, request, pk=None):
        image = self.get_object()
        root = jpg_root().resolve()
        path = image.jpg_path().resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise Http404("The JPEG of this image is missing.")
        return FileResponse(open(path, "rb"), content_type="image/jpeg")
