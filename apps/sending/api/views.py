from auditlog.context import set_actor
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from apps.jobs.api.views import JobViewSetMixin
from apps.projects.access import require_project
from apps.sending import intake
from apps.sending.api.serializers import InboxRunSerializer, InboxSerializer, SendJobSerializer, SendRequestSerializer
from apps.sending.models import Inbox, SendJob
from apps.sending.report import build_report, report_csv
from apps.sending.roots import OutsideRoots
from pacsportal.permissions import model_permission


class SendJobViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Send a file or folder on the server (inside IMPORT_ROOTS), or uploaded files, to DICOM servers."""

    queryset = SendJob.objects.prefetch_related("items", "servers").select_related("inbox")
    serializer_class = SendJobSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        """Own jobs (or all, with "view all jobs"), and inbox runs for whoever may view inboxes."""
        jobs = super().get_queryset()
        if self.request.user.has_perm(model_permission(Inbox, "view")):
            jobs = jobs | self.queryset.filter(inbox__isnull=False)
        return jobs

    def get_action_permissions(self) -> dict[str, list[str]]:
        return {**super().get_action_permissions(), "report": [model_permission(SendJob, "view")]}

    @extend_schema(request=SendRequestSerializer, responses={201: SendJobSerializer})
    def create(self, request):
        data = request.data
        if hasattr(data, "getlist"):  # multipart: repeated fields (servers=A&servers=B, files=...)
            data = {"servers": data.getlist("servers"), "path": data.get("path", ""),
                    "method": data.get("method", SendJob.Method.C_STORE), "files": request.FILES.getlist("files"),
                    "project": data.get("project")}
        body = SendRequestSerializer(data=data)
        body.is_valid(raise_exception=True)
        given = body.validated_data
        require_project(request.user, given["project"])
        for server in given["servers"]:
            server.check_access(request.user, "send")
        try:
            if given["files"]:
                job = intake.send_uploads(given["files"], given["servers"], user=request.user, method=given["method"],
                                          project=given["project"])
            else:
                job = intake.send_path(given["path"], given["servers"], user=request.user, method=given["method"],
                                       project=given["project"])
        except (OutsideRoots, FileNotFoundError) as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """Every skipped, failed or warned file with its reason; `?output=csv` for a CSV file."""
        report = build_report(self.get_object())
        if request.query_params.get("output") == "csv":
            response = HttpResponse(report_csv(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="send_report_job{pk}.csv"'
            return response
        return Response(report)


class StaffToManageInboxes(BasePermission):
    """Creating, changing and deleting inboxes needs a staff account on top of the model permission:
    an inbox's folder, and every folder put in it, belongs to whoever may manage inboxes."""

    message = ("Managing inboxes needs a staff account (and the inbox permissions): an inbox's folder, and "
               "everything put in it, belongs to whoever may manage inboxes.")

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or bool(request.user and request.user.is_staff)


class InboxViewSet(viewsets.ModelViewSet):
    """Watched inboxes by name; GET {name}/runs/ lists the folders each one sent (or failed to)."""

    queryset = Inbox.objects.prefetch_related("destinations")
    serializer_class = InboxSerializer  # reading needs view_inbox too (the project's model permissions)
    lookup_field = "name"

    def get_permissions(self):
        return [*super().get_permissions(), StaffToManageInboxes()]

    # DRF authenticates a token after django-auditlog's middleware ran: name the actor for the change log.
    def perform_create(self, serializer):
        with set_actor(self.request.user):
            serializer.save()

    def perform_update(self, serializer):
        with set_actor(self.request.user):
            serializer.save()

    def perform_destroy(self, instance):
        with set_actor(self.request.user):
            instance.delete()

    @extend_schema(responses={200: InboxRunSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def runs(self, request, name=None):
        runs = self.get_object().runs.order_by("-created_at", "-id")[:500]
        return Response(InboxRunSerializer(runs, many=True).data)
