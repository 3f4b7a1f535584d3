from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.audit import record
from apps.projects.maps import map_csv
from apps.projects.models import Project

MAP_PERMISSION = "projects.view_pseudonym_map"


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Projects without their secret (not a field here, not in the change log). The pseudonym map is a page
    of its own, for holders of "view pseudonym map", and every look at it is audited."""

    list_display = ("name", "profile", "option_list", "max_date_shift_days", "allow_burned_in", "patients")
    fields = ("name", "description", "profile", "options", "max_date_shift_days", "allow_burned_in", "map_link")
    readonly_fields = ("map_link",)
    search_fields = ("name",)

    def get_urls(self):
        own = [path("<int:pk>/pseudonyms/", self.admin_site.admin_view(self.pseudonyms_view),
                    name="projects_project_pseudonyms")]
        return own + super().get_urls()

    @admin.display(description="Options")
    def option_list(self, project):
        return ", ".join(project.options) or "-"

    @admin.display(description="Patients")
    def patients(self, project):
        return project.pseudonyms.count()

    @admin.display(description="Pseudonym map")
    def map_link(self, project):
        if project.pk is None:
            return "-"
        return format_html('<a href="{}">{} patient(s): view the map (needs "view pseudonym map"; audited)</a>',
                           reverse("admin:projects_project_pseudonyms", args=[project.pk]),
                           project.pseudonyms.count())

    def pseudonyms_view(self, request, pk):
        if not (self.has_view_permission(request) and request.user.has_perm(MAP_PERMISSION)):
            raise PermissionDenied("Viewing a pseudonym map needs the 'view pseudonym map' permission.")
        project = Project.objects.filter(pk=pk).first()
        if project is None:
            raise Http404("No such project.")
        output = "csv" if request.GET.get("output") == "csv" else "html"
        rows = list(project.pseudonyms.order_by("pseudonym"))
        record(request.user, "project.pseudonyms_viewed", project, output=output, rows=len(rows), via="admin")
        if output == "csv":
            response = HttpResponse(map_csv(rows), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{project.name}-pseudonyms.csv"'
            return response
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "project": project,
                   "rows": rows, "title": f"Pseudonym map of {project.name}"}
        return TemplateResponse(request, "admin/projects/pseudonyms.html", context)
