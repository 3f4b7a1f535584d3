"""Admin: delivery targets (the token is typed in, never shown back), delivery jobs with live progress
and per-batch bytes, and the receiving end's uploads (read-only)."""
from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from apps.delivery.api.serializers import TOKEN_STAYS
from apps.delivery.models import DeliveryBatch, DeliveryJob, DeliveryTarget, Upload
from apps.jobs.admin import JobAdminMixin, JobItemInline, OwnedAdminMixin
from apps.servers.outbound import same_destination
from pacsportal.admin_secrets import SecretFieldsAdminMixin


class DeliveryTargetForm(forms.ModelForm):
    url = forms.URLField(label="Portal URL", required=False, assume_scheme="https",
                         help_text="Base URL of the receiving portal, e.g. https://far.example:8000")
    token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                            help_text="API token of the receiving portal. Leave empty to keep the current one "
                                      "(a changed URL drops it: give the new URL's token).")

    class Meta:
        model = DeliveryTarget
        fields = ["name", "kind", "url", "token", "server", "path", "description"]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk or {"url", "kind"} & set(self.changed_data):
            try:
                DeliveryTarget(kind=cleaned.get("kind"), url=cleaned.get("url") or "").check_url()
            except ValidationError as exc:
                self.add_error("url", exc.message_dict["url"])
        moved = self.instance.pk and not same_destination(self.instance.url, cleaned.get("url") or "")
        if moved and not cleaned.get("token") and self.instance.token and cleaned.get("kind") == DeliveryTarget.Kind.PORTAL:
            self.add_error("token", TOKEN_STAYS)
        return cleaned


@admin.register(DeliveryTarget)
class DeliveryTargetAdmin(SecretFieldsAdminMixin, admin.ModelAdmin):
    form = DeliveryTargetForm
    secret_fields = ("token",)

    def keeps_stored_secret(self, obj, name, data) -> bool:
        """A changed URL (scheme, host, port or path) drops the stored token unless one is typed."""
        return same_destination(obj.url, data.get("url") or "")
    list_display = ("name", "kind", "url", "server", "path", "description")
    list_filter = ("kind",)


class DeliveryBatchInline(JobItemInline):
    model = DeliveryBatch
    fields = ("number", "status", "error", "cases", "files", "bytes", "sent_bytes", "current_file", "zip_path",
              "attempts", "started_at", "finished_at")
    readonly_fields = fields

    @admin.display(description="Sending now")
    def current_file(self, batch):
        result = batch.result or {}
        if batch.status != "running" or not result.get("current_file"):
            return ""
        return f"{result['current_file']}: {result.get('sent_bytes', 0)} of {result.get('total_bytes', 0)} bytes"


@admin.register(DeliveryJob)
class DeliveryJobAdmin(JobAdminMixin, admin.ModelAdmin):
    inlines = [DeliveryBatchInline]
    list_display = ("__str__", "status", "progress", "mode", "batch_size", "created_by", "created_at")
    readonly_fields = [*JobAdminMixin.readonly_fields, "retrieval", "target", "mode", "batch_size", "keep_zip",
                       "clear"]
    fields = readonly_fields


@admin.register(Upload)
class UploadAdmin(OwnedAdminMixin, admin.ModelAdmin):
    """Each account's own uploads (everyone's with "view all jobs"), as the tus API shows them."""

    list_display = ("id", "created_by", "state", "offset", "length", "files", "created_at", "expires_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in Upload._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
