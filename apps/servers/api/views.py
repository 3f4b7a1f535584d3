from django.conf import settings
from django.core.exceptions import PermissionDenied
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


def keepers(objects) -> str:
    """'3 retrieval rows of past jobs and delivery target FAR': what holds a server, by kind."""
    by_kind: dict[str, list] = {}
    for obj in objects:
        by_kind.setdefault(obj._meta.label, []).append(obj)
    said = []
    for label, found in sorted(by_kind.items()):
        if label == "retrieval.RetrievalItem":
            said.append(f"{len(found)} retrieval row(s) of past jobs")
        elif label == "delivery.DeliveryTarget":
            said.append(f"delivery target(s) {', '.join(sorted(t.name for t in found))}")
        else:
            said.append(f"{len(found)} {found[0]._meta.verbose_name_plural}")
    return " and ".join(said)


class DicomServerViewSet(viewsets.ModelViewSet):
    """DICOM servers, addressed by their short name (case-exact): /api/servers/LK/. Reading needs the view
    permission, echo too (and access to the server: query, retrieve or send); a study query needs "query server" and the server's query access."""

    action_permissions = {"echo": ["servers.view_dicomserver"], "studies": ["servers.query_server"]}
    queryset = DicomServer.objects.prefetch_related("query_groups", "retrieve_groups", "send_groups")
    serializer_class = DicomServerSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def destroy(self, request, *args, **kwargs):
        server = self.get_object()
        try:
            server.delete()
        except ProtectedError as exc:
            return Response({"error": f"Server '{server.name}' is named by {keepers(exc.protected_objects)}, "
                                      "which keep it; it cannot be deleted. Rename it or change its address "
                                      "instead."}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=EchoResultSerializer)
    @action(detail=True, methods=["post"])
    def echo(self, request, name=None):
        server = self.get_object()
        server.check_any_access(request.user)  # an echo opens an association: not for a server closed to them
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
        """C-FIND at study level on this server (the `query` of the send/query/retrieve tool). Without a
        PatientID, PatientName, StudyDate, AccessionNumber or StudyInstanceUID it needs "query without
        filter"; at most QUERY_MAX_RESULTS studies are answered, with `more` and a message beyond."""
        server = self.get_object()
        server.check_access(request.user, "query")
        filters = {k: v for k, v in request.query_params.items() if k != "format"}
        if not query.is_narrowed(filters) and not request.user.has_perm("servers.query_without_filter"):
            raise PermissionDenied(query.UNFILTERED_REFUSAL)
        try:
            studies = query.find_studies(server, filters, limit=settings.QUERY_MAX_RESULTS)
        except QueryError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        except DicomTimeout as exc:
            return Response({"error": str(exc)}, status=status.HTTP_504_GATEWAY_TIMEOUT)
        except DicomError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
        record(request.user, "server.query", server, filters=sorted(k for k, v in filters.items() if v),
               matches=len(studies))
        return Response({"server": server.name, **query.capped(studies, settings.QUERY_MAX_RESULTS)})
