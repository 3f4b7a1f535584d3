from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.jobs.api.views import JobViewSetMixin
from apps.projects.access import require_project
from apps.retrieval import extensions, intake
from apps.retrieval.api.serializers import (
    RetrievalJobListSerializer,
    RetrievalJobSerializer,
    RetrievalRequestSerializer,
)
from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import build_report, report_csv_response
from pacsportal.permissions import model_permission

JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "true or false",
              type(None): "null"}


class RetrievalJobViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          viewsets.GenericViewSet):
    """Batch retrieval by case list. POST a CSV (`file`, several allowed) or JSON `rows`. A job's body
    carries one page of its items (`?page=`, `?page_size=` up to 1000, `?status=` to filter); the list
    of jobs carries none."""

    queryset = RetrievalJob.objects.all()
    serializer_class = RetrievalJobSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_action_permissions(self):
        return {**super().get_action_permissions(), "report": [model_permission(RetrievalJob, "view")]}

    def get_serializer_class(self):
        return RetrievalJobListSerializer if self.action == "list" else RetrievalJobSerializer

    @extend_schema(parameters=[OpenApiParameter("page", int), OpenApiParameter("page_size", int),
                               OpenApiParameter("status", str, description="only items with this status")])
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=RetrievalRequestSerializer, responses={201: RetrievalJobSerializer(many=True)})
    def create(self, request):
        if not hasattr(request.data, "items"):  # JSON that is not an object: a list, a string, a number
            return Response({"error": "The body must be a JSON object ({\"rows\": [...]}) or a multipart form "
                                      f"with 'file'; got a JSON {JSON_KINDS.get(type(request.data), 'value')}."},
                            status=status.HTTP_400_BAD_REQUEST)
        files = request.FILES.getlist("file")
        body = RetrievalRequestSerializer(data={k: v for k, v in request.data.items() if k != "file"},
                                          context={"request": request})
        body.is_valid(raise_exception=True)
        rows = body.validated_data.get("rows")
        if bool(files) == (rows is not None):
            return Response({"error": "Send either a case-list file ('file') or JSON 'rows', not both or neither."},
                            status=status.HTTP_400_BAD_REQUEST)
        project = body.validated_data["project"]
        require_project(request.user, project)
        sources = [(f.name, f) for f in files] if files else [("API rows", intake.rows_to_csv(rows))]
        read = intake.read_case_lists(sources, user=request.user, default_server=body.validated_data["server"])
        refused = next((f for f in read if not f.runnable), None)
        if refused is not None:
            errors = refused.case_list.errors if refused.case_list else []
            return Response({"error": f"{refused.name}: {refused.problem}",
                             "row_errors": [{"line": e.line, "text": e.text, "message": e.message} for e in errors]},
                            status=status.HTTP_400_BAD_REQUEST)
        jobs = intake.start_jobs(read, user=request.user, timeout=body.validated_data.get("timeout"),
                                 default_server=body.validated_data["server"],
                                 project=project,
                                 **{a.name: body.validated_data.get(a.name) for a in extensions.attachments()})
        payload = [self.get_serializer(job).data for job in jobs]
        return Response(payload[0] if rows is not None or len(payload) == 1 else payload,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """The failed-downloads report; `?output=csv` for the CSV file the admin offers."""
        job = self.get_object()
        if request.query_params.get("output") == "csv":
            return report_csv_response(job)
        return Response(build_report(job))
