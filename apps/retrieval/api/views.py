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
    RetrieveFoundSerializer,
)
from apps.retrieval.followup import FollowUpRefused, retrieve_found
from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import build_report, report_csv_response
from apps.retrieval.results import caselist_response, results_response, results_rows
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
        return {**super().get_action_permissions(), "report": [model_permission(RetrievalJob, "view")],
                "results": [model_permission(RetrievalJob, "view")],
                "retrieve_found": [model_permission(RetrievalJob, "view"), RetrievalJob.start_permission]}

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
        attached = [a.name for a in extensions.attachments() if body.validated_data.get(a.name) is not None]
        if body.validated_data["mode"] == "query" and attached:
            return Response({"error": f"mode 'query' moves nothing, so nothing can follow it: leave out "
                                      f"{', '.join(repr(name) for name in attached)}."},
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
                                 mode=body.validated_data["mode"], project=project,
                                 **{a.name: body.validated_data.get(a.name) for a in extensions.attachments()})
        payload = [self.get_serializer(job).data for job in jobs]
        return Response(payload[0] if rows is not None or len(payload) == 1 else payload,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """The failed-downloads report; `?output=csv` for the CSV file the admin offers; `?output=caselist`
        for the failed and flagged rows as a case list to fix and upload again."""
        job = self.get_object()
        if request.query_params.get("output") == "caselist":
            return caselist_response(job)
        if request.query_params.get("output") == "csv":
            return report_csv_response(job)
        return Response(build_report(job))

    @extend_schema(parameters=[OpenApiParameter("output", str, enum=["json", "csv", "xlsx"])], responses={200: dict})
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """A query job's found studies, one line per study with the line of the row that found it."""
        job = self.get_object()
        output = request.query_params.get("output", "json")
        if output not in ("json", "csv", "xlsx"):
            return Response({"error": f"output '{output}' is not one of json, csv, xlsx."},
                            status=status.HTTP_400_BAD_REQUEST)
        if output == "json":
            return Response({"job": job.pk, "mode": job.mode, "status": job.status, "results": results_rows(job)})
        return results_response(job, output)

    @extend_schema(request=RetrieveFoundSerializer, responses={201: RetrievalJobSerializer})
    @action(detail=True, methods=["post"], url_path="retrieve", url_name="retrieve-found")
    def retrieve_found(self, request, pk=None):
        """Retrieve what a query job found: every study, or those `studies` names (StudyInstanceUIDs the
        query found); a new retrieval job of the caller's, by StudyInstanceUID on the server each was found on."""
        job = self.get_object()
        if not isinstance(request.data, dict):
            return Response({"error": 'Send an object: {"studies": [StudyInstanceUID, ...]}, or nothing for all.'},
                            status=status.HTTP_400_BAD_REQUEST)
        body = RetrieveFoundSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            started = retrieve_found(job, user=request.user, uids=body.validated_data.get("studies"),
                                     timeout=body.validated_data.get("timeout"))
        except FollowUpRefused as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(started).data, status=status.HTTP_201_CREATED)
