"""Admin: "Send to PACS" (upload files or give a path, pick servers, then the job page with live
progress), send jobs and inbox runs with their report and phase-by-phase log, and the inboxes."""
from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from apps.jobs.access import visible_jobs
from apps.jobs.admin import JobAdminMixin, JobItemInline
from apps.projects.access import refusal
from apps.sending import intake
from apps.sending.forms import SendForm
from apps.sending.models import Inbox, SendItem, SendJob
from apps.sending.report import build_report, report_csv
from apps.sending.roots import OutsideRoots
from apps.servers.models import ServerAccessDenied
from pacsportal.permissions import model_permission


class SendItemInline(JobItemInline):
    model = SendItem
    fields = ("batch", "status", "error", "files", "sent", "warnings", "skipped", "not_stored", "bytes", "attempts")
    readonly_fields = fields


@admin.register(SendJob)
class SendJobAdmin(JobAdminMixin, admin.ModelAdmin):
    inlines = [SendItemInline]
    list_display = ("__str__", "description", "status", "progress", "inbox", "created_by", "created_at", "report_link")
    list_filter = ("status", "inbox", "created_at")
    readonly_fields = [*JobAdminMixin.readonly_fields[:2], "report_link", "error_summary", "server_names", "method",
                       "project", "source", "inbox", "folder_sent", "archived_to", "phase_log",
                       *JobAdminMixin.readonly_fields[2:]]
    fields = readonly_fields
    change_list_template = "admin/sending/sendjob/change_list.html"

    def get_queryset(self, request):
        """Own jobs (JobAdminMixin), and inbox runs for whoever may view inboxes."""
        every = admin.ModelAdmin.get_queryset(self, request).select_related("inbox", "created_by")
        jobs = visible_jobs(every, request.user)
        if request.user.has_perm(model_permission(Inbox, "view")):
            jobs = jobs | every.filter(inbox__isnull=False)
        return jobs

    def get_urls(self):
        own = [path("send/", self.admin_site.admin_view(self.send_view), name="sending_send"),
               path("<int:pk>/report.csv", self.admin_site.admin_view(self.report_view), name="sending_report")]
        return own + super().get_urls()

    # a project's job shows no original (the folder's name is the patient's ID and name)
    @admin.display(description="Source path")
    def source(self, job):
        return job.shown_source_path

    @admin.display(description="Folder")
    def folder_sent(self, job):
        return job.shown_folder

    @admin.display(description="Archive path")
    def archived_to(self, job):
        return job.shown_archive_path

    @admin.display(description="Report")
    def report_link(self, job):
        return format_html('<a href="{}">skipped, failed and warned files (CSV)</a>',
                           reverse("admin:sending_report", args=[job.pk]))

    @admin.display(description="Error")
    def error_summary(self, job):
        return job.error_summary() or "none"

    @admin.display(description="Servers")
    def server_names(self, job):
        return ", ".join(s.name for s in job.servers.all())

    @admin.display(description="Log")
    def phase_log(self, job):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', job.log or "(nothing yet)")

    def report_view(self, request, pk):
        self.require_view(request)
        job = self.get_object(request, str(pk))
        if job is None:
            return HttpResponse(status=404)
        response = HttpResponse(report_csv(build_report(job)), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="send_report_job{pk}.csv"'
        return response

    def send_view(self, request):
        self.require_start(request)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Send to PACS"}
        form = SendForm(request.POST or None, request.FILES or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                for server in data["servers"]:
                    server.check_access(request.user, "send")
                if data["files"]:
                    job = intake.send_uploads(data["files"], list(data["servers"]), user=request.user,
                                              method=data["method"], project=data["project"])
                else:
                    job = intake.send_path(data["path"], list(data["servers"]), user=request.user, method=data["method"],
                                           project=data["project"])
            except ServerAccessDenied as exc:
                form.add_error("servers", str(exc))
            except (OutsideRoots, FileNotFoundError) as exc:
                form.add_error("path", str(exc))
            else:
                self.message_user(request, f"Started {job}: {job.items.count()} batches.", messages.SUCCESS)
                return redirect("admin:sending_sendjob_change", job.pk)
        context["form"] = form
        return render(request, "admin/sending/send.html", context)


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "enabled", "disabled_reason", "debounce_seconds", "destination_names", "archive_path",
                    "runs_link")
    list_filter = ("enabled",)
    filter_horizontal = ("destinations",)
    readonly_fields = ("disabled_reason", "unmatched_folders", "runs_link", "created_at", "updated_at")

    def get_form(self, request, obj=None, **kwargs):
        """Every save checks that the user may send to each destination, as the API does."""
        form = super().get_form(request, obj, **kwargs)
        user = request.user

        class SendAccessChecked(form):
            def clean(self):
                data = super().clean()
                problem = refusal(user, data.get("project", getattr(obj, "project", None)))
                if problem:
                    self.add_error("project" if "project" in self.fields else None, problem)
                for server in data.get("destinations") or []:
                    if not server.may(user, "send"):
                        self.add_error("destinations", server.refusal("send"))
                return data

        return SendAccessChecked

    @admin.display(description="Destinations")
    def destination_names(self, inbox):
        return ", ".join(s.name for s in inbox.destinations.all())

    @admin.display(description="Runs")
    def runs_link(self, inbox):
        url = reverse("admin:sending_sendjob_changelist") + f"?inbox__id__exact={inbox.pk}"
        return format_html('<a href="{}">{} runs</a>', url, inbox.runs.count()) if inbox.pk else "-"

    @admin.display(description="Folders not matching the pattern (left alone)")
    def unmatched_folders(self, inbox):
        if not inbox.unmatched:
            return "none"
        return format_html("<br>".join("{} — {} (since {})" for _ in inbox.unmatched),
                           *[v for e in inbox.unmatched for v in (e["folder"], e["reason"], e["seen_at"])])
