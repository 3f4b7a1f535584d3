"""Admin: start an import and watch it (live progress, every failed file with its reason), and browse
imported patients and images with thumbnails."""
from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from apps.imports.intake import start_import
from apps.imports.models import ImportedImage, ImportedPatient, ImportItem, ImportJob
from apps.imports.scan import SourceRefused
from apps.jobs.admin import JobAdminMixin, JobItemInline

ERRORS_SHOWN = 500


class StartImportForm(forms.Form):
    source_path = forms.CharField(max_length=1024, help_text="A folder inside IMPORT_ROOTS.")
    description = forms.CharField(max_length=200, required=False)


class ImportItemInline(JobItemInline):
    model = ImportItem
    fields = ["number", "kind", "status", "error", "result", "attempts", "started_at", "finished_at"]


@admin.register(ImportJob)
class ImportJobAdmin(JobAdminMixin, admin.ModelAdmin):
    inlines = [ImportItemInline]
    list_display = ["task_id", "source_path", "status", "progress", "created_by", "created_at", "completed_at"]
    search_fields = ["task_id", "source_path", "description"]
    readonly_fields = ["task_id", "source_path", *JobAdminMixin.readonly_fields, "errors_table", "notes_table"]
    fields = readonly_fields
    change_list_template = "admin/imports/importjob/change_list.html"

    def get_urls(self):
        start = path("start/", self.admin_site.admin_view(self.start_view), name="imports_start")
        return [start, *super().get_urls()]

    @admin.display(description="Files not imported")
    def errors_table(self, job):
        rows = job.errors(limit=ERRORS_SHOWN)
        if not rows:
            return "none"
        body = format_html_join("", '<tr class="import-error"><td><code>{}</code></td><td>{}</td></tr>',
                                ((r["file"], r["reason"]) for r in rows))
        return format_html('<table><thead><tr><th>File</th><th>Reason</th></tr></thead><tbody>{}</tbody></table>',
                           body)

    @admin.display(description="Notes")
    def notes_table(self, job):
        rows = job.notes(limit=ERRORS_SHOWN)
        if not rows:
            return "none"
        return format_html_join(mark_safe("<br>"), "<code>{}</code>: {}", ((r["file"], r["note"]) for r in rows))

    def start_view(self, request):
        self.require_start(request)
        form = StartImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = start_import(form.cleaned_data["source_path"], form.cleaned_data["description"],
                                   user=request.user)
            except SourceRefused as exc:
                form.add_error("source_path", str(exc))
            else:
                self.message_user(request, f"Started import {job.task_id}.", messages.SUCCESS)
                return redirect("admin:imports_importjob_change", job.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Start a folder import", "submit_label": "Start import", "form_id": "start-import-form"}
        return render(request, "admin/imports/start.html", context)


def thumbnail(image: ImportedImage):
    return format_html('<img src="{}" alt="{}" loading="lazy" style="max-height:96px;max-width:96px">',
                       reverse("imported-image-jpg", args=[image.pk]), image.original_filename)


class ImportedImageInline(admin.TabularInline):
    model = ImportedImage
    fields = ["preview", "original_filename", "sop_instance_uid", "width", "height", "modality"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    @admin.display(description="Image")
    def preview(self, image):
        return thumbnail(image)


def view_link(study_uids) -> str:
    """A link opening the studies in the viewer (/viewer/), or "" when there is none."""
    uids = sorted({uid for uid in study_uids if uid})
    if not uids:
        return ""
    return format_html('<a class="view-study" href="{}?{}">View</a>', reverse("viewer"),
                       urlencode({"StudyInstanceUIDs": ",".join(uids)}))


@admin.register(ImportedPatient)
class ImportedPatientAdmin(admin.ModelAdmin):
    list_display = ["patient_id", "name", "birth_date", "sex", "image_count", "created_at"]
    search_fields = ["patient_id", "name"]
    readonly_fields = ["patient_id", "name", "birth_date", "sex", "first_job", "created_at", "view"]
    inlines = [ImportedImageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(image_count=Count("images"))

    @admin.display(description="Images", ordering="image_count")
    def image_count(self, patient):
        return patient.image_count

    @admin.display(description="Viewer")
    def view(self, patient):
        return view_link(patient.images.values_list("study_instance_uid", flat=True).distinct())

    def has_add_permission(self, request):
        return False


@admin.register(ImportedImage)
class ImportedImageAdmin(admin.ModelAdmin):
    list_display = ["preview", "patient", "original_filename", "sop_instance_uid", "width", "height", "modality",
                    "created_at"]
    list_filter = ["modality", "created_at"]
    search_fields = ["patient__patient_id", "original_filename", "sop_instance_uid"]
    list_select_related = ["patient"]
    readonly_fields = ["large_preview", "patient", "original_filename", "sop_instance_uid", "study_instance_uid",
                       "modality", "width", "height", "frames", "source_path", "job", "created_at"]
    fields = readonly_fields

    @admin.display(description="Image")
    def preview(self, image):
        return thumbnail(image)

    @admin.display(description="Image")
    def large_preview(self, image):
        return format_html('<img src="{}" alt="{}" style="max-width:100%">',
                           reverse("imported-image-jpg", args=[image.pk]), image.original_filename)

    def has_add_permission(self, request):
        return False
