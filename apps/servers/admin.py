from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.shortcuts import redirect
from django.urls import path

from apps.audit import record
from apps.jobs.admin import JobAdminMixin, JobItemInline
from apps.servers.intake import start_echo_job
from apps.servers.models import DicomServer, EchoItem, EchoJob, ServerAccessDenied
from apps.servers.outbound import check_outbound_url, same_destination
from pacsportal.admin_secrets import SecretFieldsAdminMixin


class DicomServerForm(forms.ModelForm):
    class Meta:
        model = DicomServer
        fields = ["name"]  # the rest as the admin lists them (fieldsets)

    def clean(self):
        """The outbound-URL rule for a DICOMweb URL set or changed now (sending checks it again)."""
        cleaned = super().clean()
        if "dicomweb_url" in self.changed_data:
            try:
                check_outbound_url(cleaned.get("dicomweb_url") or "", "dicomweb_url")
            except ValidationError as exc:
                self.add_error("dicomweb_url", exc.message_dict["dicomweb_url"])
        return cleaned


@admin.register(DicomServer)
class DicomServerAdmin(SecretFieldsAdminMixin, admin.ModelAdmin):
    secret_fields = ("dicomweb_secret",)
    form = DicomServerForm

    def keeps_stored_secret(self, obj, name, data) -> bool:
        """A changed DICOMweb URL (scheme, host, port or path) drops the stored secret unless one is typed."""
        return same_destination(obj.dicomweb_url, data.get("dicomweb_url") or "")
    list_display = ("name", "ae_title", "host", "port", "retrieve_method", "max_associations", "paused",
                    "description")
    search_fields = ("name", "ae_title", "host", "description")
    list_filter = ("retrieve_method", "open_to_everyone", "paused")
    actions = ["test_echo", "pause_servers", "resume_servers"]
    filter_horizontal = ("query_groups", "retrieve_groups", "send_groups")
    # A DICOMweb URL typed without a scheme is taken as https, as delivery targets' are: images of patients
    # do not go in the clear by default (and Django 6 makes https the default anyway).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "ae_title", "host", "port", "description")}),
        ("Timeouts and limits", {"fields": ("query_timeout", "download_timeout", "retries",
                                            "retrieve_method", "max_associations")}),
        ("Clustered PACS", {"classes": ("collapse",), "fields": ("store_from",)}),
        ("TLS", {"classes": ("collapse",), "fields": ("tls_enabled", "tls_ca_file", "tls_cert_file",
                                                       "tls_key_file")}),
        ("DICOMweb", {"classes": ("collapse",), "fields": ("dicomweb_url", "dicomweb_auth",
                                                            "dicomweb_username", "dicomweb_secret")}),
        ("Who may use it", {"fields": ("open_to_everyone", "query_groups", "retrieve_groups", "send_groups")}),
        ("Operations", {"fields": ("paused", "windows")}),
    )

    @admin.action(description="Pause selected servers (running items finish)", permissions=["change"])
    def pause_servers(self, request, queryset):
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume selected servers", permissions=["change"])
    def resume_servers(self, request, queryset):
        self._set_paused(request, queryset, False)

    def _set_paused(self, request, queryset, paused: bool):
        for server in queryset:
            server.paused = paused
            server.save(update_fields=["paused", "updated_at"])  # saved one by one: audited, held work woken
            record(request.user, "server.paused" if paused else "server.resumed", server)
        self.message_user(request, f"{'Paused' if paused else 'Resumed'} {queryset.count()} server(s).",
                          messages.SUCCESS)

    @admin.action(description="Test C-ECHO", permissions=["view"])  # as POST /api/servers/{name}/echo/
    def test_echo(self, request, queryset):
        for server in queryset:
            try:
                server.check_any_access(request.user)  # as the API's echo: only a server one may use
            except ServerAccessDenied as exc:
                self.message_user(request, f"{server.name}: not tested. {exc}", messages.ERROR)
                continue
            result = server.echo()
            record(request.user, "server.echo", server, ok=result["ok"], error=result["error"])
            if result["ok"]:
                self.message_user(request, f"{server.name}: C-ECHO OK in {result['elapsed_ms']} ms.",
                                  messages.SUCCESS)
            else:
                self.message_user(request, f"{server.name}: C-ECHO failed — {result['error']}", messages.ERROR)

    def changelist_view(self, request, extra_context=None):
        # The local AE comes from the environment (DICOM_AE_TITLE, DICOM_PORT): show it where the
        # PACS administrator needs it, next to the servers that must know it.
        extra_context = {**(extra_context or {}), "local_ae": {
            "ae_title": settings.DICOM_AE_TITLE, "host": settings.DICOM_HOST, "port": settings.DICOM_PORT}}
        return super().changelist_view(request, extra_context)


class EchoItemInline(JobItemInline):
    model = EchoItem
    fields = ["server_name", "result"] + JobItemInline.fields


@admin.register(EchoJob)
class EchoJobAdmin(JobAdminMixin, admin.ModelAdmin):
    inlines = [EchoItemInline]
    change_list_template = "admin/servers/echojob/change_list.html"

    def get_urls(self):
        run = path("run/", self.admin_site.admin_view(self.run_view), name="servers_echojob_run")
        return [run, *super().get_urls()]

    def run_view(self, request):
        """POST: start an EchoJob over every server, then show it."""
        self.require_start(request)
        if request.method != "POST":
            return redirect("admin:servers_echojob_changelist")
        job = start_echo_job(DicomServer.objects.all(), user=request.user)
        return redirect("admin:servers_echojob_change", job.pk)
