from django.contrib import admin

from apps.jobs.admin import JobAdminMixin, JobItemInline
from apps.photos.models import PhotoSend, PhotoSettings, PhotoUpload


@admin.register(PhotoSettings)
class PhotoSettingsAdmin(admin.ModelAdmin):
    """The one settings row: the list goes straight to it, nothing to add or delete."""

    fieldsets = (
        ("Destination", {"fields": ("backend", "destination", "timeout_seconds", "dicomweb_verify_tls")}),
        ("Images", {"fields": ("local_modality", "local_resize_max", "local_transfer_syntax", "local_charset")}),
        ("What goes into the images", {"fields": ("include_patient_info_except_id", "include_exam_description")}),
        ("Uploads", {"fields": ("max_upload_mb", "keep_files_on_success", "theme_dark")}),
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        from django.shortcuts import redirect

        return redirect("admin:photos_photosettings_change", PhotoSettings.load().pk)


class PhotoSendInline(JobItemInline):
    model = PhotoSend
    fields = JobItemInline.fields + ["result"]


@admin.register(PhotoUpload)
class PhotoUploadAdmin(JobAdminMixin, admin.ModelAdmin):
    list_display = JobAdminMixin.list_display[:3] + ["server_name", "photos"] + JobAdminMixin.list_display[3:]
    readonly_fields = JobAdminMixin.readonly_fields + ["server_name", "backend", "patient_id", "study_instance_uid",
                                                       "series_instance_uid", "photos", "folder"]
    fields = readonly_fields
    search_fields = ["patient_id", "study_instance_uid"]
    inlines = [PhotoSendInline]
