from django.conf import settings
from django.db.models import ProtectedError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.audit import record
from apps.dicom.errors import DicomError, DicomTimeout
from apps.dicom.query import QueryError
from apps.servers import query
from apps.servers.api.serializers import DicomServerSerializer, EchoResultSerializer
from apps.servers.models import DicomServer


class DicomServerViewSet(viewsets.ModelViewSet):
    """DICOM servers, addressed by their short name: /api/servers/LK/."""

    queryset = DicomServer.objects.all()
    serializer_class = DicomServerSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def destroy(self, request, *args, **kwargs):
        server = self.get_object()
        try:
            server.delete()
        except ProtectedError as exc:
            users = sorted({str(type(obj)._meta.verbose_name_plural) for obj in exc.protected_objects})
            return Response({"error": f"Server {server.name} cannot be deleted: {len(exc.protected_objects)} "
                                      f"{' and '.join(users)} refer to it (their history would lose its "
                                      "server). Delete those jobs first, or keep the server."},
                            status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=EchoResultSerializer)
    @action(detail=True, methods=["post"])
    def echo(self, request, name=None):
        server = self.get_object()
        result = server.echo()
        record(request.user, "server.echo", server, ok=result["ok"], error=result["error"])
        return Response(result)

    @extend_schema(
        parameters=[OpenApiParameter(k, str, description=d) for k, d in (
            ("PatientID", "exact, or with C-FIND wildcards * and ? (this query may widen on purpose; "
                          "case lists never do)"),
            ("PatientName", "e.g. SMITH^* (wildcards allowed)"),
            ("StudyDate", "YYYYMMDD or YYYYMMDD-YYYYMMDD"), ("Modality", "e.g. CT"),
        )],
        responses={200: dict},
    )
    @action(detail=True, methods=["get"])
    def studies(self, request, name=None):
        """C-FIND at study level on this server (the `query` of the send/query/retrieve tool). Wildcards
        (`*`, `?`) are passed to the PACS on purpose here; at most QUERY_MAX_RESULTS studies come back,
        and `truncated` with a `message` says when the PACS had more."""
        server = self.get_object()
        filters = {k: v for k, v in request.query_params.items() if k != "format"}
        limit = settings.QUERY_MAX_RESULTS
        try:
            studies = query.find_studies(server, filters, limit=limit + 1)
        except QueryError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        except DicomTimeout as exc:
            return Response({"error": str(exc)}, status=status.HTTP_504_GATEWAY_TIMEOUT)
        except DicomError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
        record(request.user, "server.query", server, filters=sorted(k for k, v in filters.items() if v),
               matches=len(studies))
        truncated = len(studies) > limit
        body = {"server": server.name, "count": min(len(studies), limit), "truncated": truncated,
                "studies": studies[:limit]}
        if truncated:
            body["message"] = (f"More results than shown: the first {limit} studies the PACS returned are "
                               "listed. Narrow the query (PatientID, StudyDate, Modality).")
        return Response(body)
