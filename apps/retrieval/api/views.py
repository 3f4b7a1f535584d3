from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.jobs.api.views import JobViewSetMixin
from apps.retrieval import intake
from apps.retrieval.api.serializers import RetrievalJobSerializer, RetrievalRequestSerializer
from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import build_report, report_csv
from pacsportal.permissions import model_permission

MAX_CASE_LIST_BYTES = 5 * 1024 * 1024


class RetrievalJobViewSet(JobViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          viewsets.GenericViewSet):
    """Batch retrieval by case list (seed 000). POST a CSV (`file`, several allowed) or JSON `rows`."""

    queryset = RetrievalJob.objects.prefetch_related("items")
    serializer_class = RetrievalJobSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_action_permissions(self):
        return {**super().get_action_permissions(), "report": [model_permission(RetrievalJob, "view")]}

    @extend_schema(request=RetrievalRequestSerializer, responses={201: RetrievalJobSerializer(many=True)})
    def create(self, request):
        files = request.FILES.getlist("file")
        body = RetrievalRequestSerializer(data={k: v for k, v in request.data.items() if k != "file"})
        body.is_valid(raise_exception=True)
        rows = body.validated_data.get("rows")
        if bool(files) == (rows is not None):
            return Response({"error": "Send either a case-list file ('file') or JSON 'rows', not both or neither."},
                            status=status.HTTP_400_BAD_REQUEST)
        sources = [(f.name, f) for f in files] if files else [("API rows", None)]
        parsed = []
        for name, upload in sources:
            if upload is not None and upload.size > MAX_CASE_LIST_BYTES:
                return Response({"error": f"{name}: {upload.size} bytes is over the {MAX_CASE_LIST_BYTES} byte limit "
                                          "for a case list."}, status=status.HTTP_400_BAD_REQUEST)
            text = upload.read() if upload is not None else intake.rows_to_csv(body.validated_data["rows"])
            try:
                case_list = intake.read_case_list(text, user=request.user,
                                                   default_server=body.validated_data["server"])
            except ValueError as exc:
                return Response({"error": f"{name}: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
            if not case_list.rows:
                return Response({"error": f"{name}: no row can be run.",
                                 "row_errors": [{"line": e.line, "text": e.text, "message": e.message}
                                                for e in case_list.errors]},
                                status=status.HTTP_400_BAD_REQUEST)
            parsed.append((name, case_list))
        jobs = [intake.start_job(case_list, user=request.user, source_name=name,
                                 timeout=body.validated_data.get("timeout"))
                for name, case_list in parsed]
        payload = [self.get_serializer(job).data for job in jobs]
        return Response(payload[0] if rows is not None or len(payload) == 1 else payload,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """The failed-downloads report; `?output=csv` for the CSV file the admin offers."""
        report = build_report(self.get_object())
        if request.query_params.get("output") == "csv":
            response = HttpResponse(report_csv(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="failed_downloads_job{pk}.csv"'
            return response
        return Response(report)
