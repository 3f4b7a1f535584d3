from django.db.models import ProtectedError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.audit import record
from apps.projects.api.serializers import ProjectSerializer, PseudonymRowSerializer
from apps.projects.maps import map_csv
from apps.projects.models import Project


class ProjectViewSet(viewsets.ModelViewSet):
    """Research projects by name: /api/projects/TRIAL1/. Model permissions as everywhere; the pseudonym
    map (GET {name}/pseudonyms, ?output=csv) needs "view pseudonym map" and every look is audited."""

    action_permissions = {"pseudonyms": ["projects.view_project", "projects.view_pseudonym_map"]}
    queryset = Project.objects.all()
    serializer_class = ProjectSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def destroy(self, request, *args, **kwargs):
        project = self.get_object()
        try:
            project.delete()
        except ProtectedError:
            return Response({"error": f"Project '{project.name}' has a pseudonym map (the only way back from "
                                      "its pseudonyms to the patients) or jobs that name it; it cannot be deleted."},
                            status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[OpenApiParameter("output", str, enum=["json", "csv"])],
                   responses=PseudonymRowSerializer(many=True))
    @action(detail=True, methods=["get"])
    def pseudonyms(self, request, name=None):
        project = self.get_object()
        output = request.query_params.get("output", "json")
        if output not in ("json", "csv"):
            return Response({"output": [f"'{output}' is not an output; use json or csv."]},
                            status=status.HTTP_400_BAD_REQUEST)
        rows = list(project.pseudonyms.order_by("pseudonym"))
        record(request.user, "project.pseudonyms_viewed", project, output=output, rows=len(rows))
        if output == "json":
            return Response(PseudonymRowSerializer(rows, many=True).data)
        response = HttpResponse(map_csv(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{project.name}-pseudonyms.csv"'
        return response
