"""The catalog in the admin, read only: the instances a user may see (their own jobs', or all with "view
all jobs"), by study; another account's row is a 404, as in DICOMweb."""
from django.contrib import admin
from django.http import Http404
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from apps.catalog.models import Instance
from apps.jobs.access import sees_all_jobs


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["study_instance_uid", "patient_id", "study_date", "modality", "series_number",
                    "instance_number", "source", "owner", "size", "view"]
    readonly_fields = ["view"]
    list_filter = ["source", "modality"]
    search_fields = ["=patient_id", "=study_instance_uid", "=accession_number", "=sop_instance_uid"]
    show_full_result_count = False  # a count of a large catalog costs more than the page
    list_select_related = ["owner"]

    @admin.display(description="Viewer")
    def view(self, row):
        """The row's study in the viewer (/viewer/, linked by URL name: the viewer is a room above)."""
        return format_html('<a class="view-study" href="{}?{}">View</a>', reverse("viewer"),
                           urlencode({"StudyInstanceUIDs": row.study_instance_uid}))

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        return rows if sees_all_jobs(request.user) else rows.filter(owner=request.user)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404(f"No {opts.verbose_name} {object_id} here.")

    def has_add_permission(self, request):
        return False  # rows are written by the filing, never typed in

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a row goes with its file (delivery's clear, `catalog rebuild`)
