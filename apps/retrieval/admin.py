"""Admin: retrieval jobs with live progress, the case-list upload with a preview of every bad row
before anything runs, a single-query form, and the failed-downloads report as CSV."""
import base64

from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from apps.jobs.admin import JobAdminMixin, JobItemInline
from apps.retrieval import intake
from apps.retrieval.forms import CaseListUploadForm, SingleQueryForm
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.retrieval.report import build_report, report_csv


class RetrievalItemInline(JobItemInline):
    model = RetrievalItem
    # Error right after status: a failed row's reason must not be the column scrolled off screen.
    fields = ("line", "status", "error", "patient_id", "study_date", "modality", "server_name",
              "study_instance_uid", "expected", "instances", "path", "attempts")
    readonly_fields = fields


@admin.register(RetrievalJob)
class RetrievalJobAdmin(JobAdminMixin, admin.ModelAdmin):
    inlines = [RetrievalItemInline]
    list_display = ("__str__", "status", "progress", "created_by", "created_at", "report_link")
    # The report and the refused rows sit next to the progress bar: what a technologist follows up on.
    readonly_fields = [*JobAdminMixin.readonly_fields[:2], "report_link", "bad_rows",
                       *JobAdminMixin.readonly_fields[2:]]
    fields = readonly_fields
    change_list_template = "admin/retrieval/retrievaljob/change_list.html"
    change_form_template = "admin/retrieval/retrievaljob/change_form.html"

    def get_urls(self):
        own = [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="retrieval_upload"),
            path("query/", self.admin_site.admin_view(self.query_view), name="retrieval_query"),
            path("<int:pk>/report.csv", self.admin_site.admin_view(self.report_view), name="retrieval_report"),
        ]
        return own + super().get_urls()

    @admin.display(description="Report")
    def report_link(self, job):
        return format_html('<a href="{}">failed downloads (CSV)</a>', reverse("admin:retrieval_report", args=[job.pk]))

    @admin.display(description="Bad rows (not run)")
    def bad_rows(self, job):
        if not job.row_errors:
            return "none"
        rows = format_html_join("", '<tr class="bad-row"><td>{}</td><td><code>{}</code></td><td>{}</td></tr>',
                                ((e["line"], e["text"], e["message"]) for e in job.row_errors))
        return format_html('<table class="bad-rows"><thead><tr><th>Line</th><th>Row as written</th>'
                           '<th>Problem</th></tr></thead><tbody>{}</tbody></table>', rows)

    def report_view(self, request, pk):
        self.require_view(request)
        job = self.get_object(request, str(pk))
        if job is None:
            return HttpResponse(status=404)
        response = HttpResponse(report_csv(build_report(job)), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="failed_downloads_job{pk}.csv"'
        return response

    def upload_view(self, request):
        """Step 1 reads the files and shows every row (bad ones with line and reason); step 2 starts a job
        per file with the very text that was previewed, carried in the form."""
        self.require_start(request)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Upload case lists"}
        if request.method == "POST" and "confirm" in request.POST:
            timeout = int(request.POST["timeout"]) if request.POST.get("timeout") else None
            started = []
            for name, blob in zip(request.POST.getlist("name"), request.POST.getlist("content")):
                case_list = intake.read_case_list(base64.b64decode(blob), user=request.user,
                                                  default_server=request.POST.get("default_server", ""))
                if case_list.rows:
                    started.append(intake.start_job(case_list, user=request.user, source_name=name, timeout=timeout))
            for job in started:
                self.message_user(request, f"Started {job}: {job.items.count()} rows, "
                                           f"{len(job.row_errors)} bad rows skipped.", messages.SUCCESS)
            return redirect("admin:retrieval_retrievaljob_changelist")
        form = CaseListUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            default = form.cleaned_data["default_server"].name if form.cleaned_data["default_server"] else ""
            previews = []
            for upload in form.cleaned_data["files"]:
                data = upload.read()
                try:
                    case_list, problem = intake.read_case_list(data, user=request.user, default_server=default), ""
                except ValueError as exc:
                    case_list, problem = None, str(exc)
                previews.append({"name": upload.name, "case_list": case_list, "problem": problem,
                                 "content": base64.b64encode(data).decode()})
            context.update(previews=previews, timeout=form.cleaned_data["timeout"] or "", default_server=default,
                           runnable=any(p["case_list"] and p["case_list"].rows for p in previews))
            return render(request, "admin/retrieval/preview.html", context)
        context["form"] = form
        return render(request, "admin/retrieval/upload.html", context)

    def query_view(self, request):
        self.require_start(request)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Retrieve one study"}
        form = SingleQueryForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            text = intake.rows_to_csv([{"PatientID": data["patient_id"], "StudyDate": data["study_date"],
                                        "Modality": data["modality"], "Server": data["server"].name}])
            case_list = intake.read_case_list(text, user=request.user)
            if case_list.errors:
                form.add_error(None, "; ".join(e.message for e in case_list.errors))
            else:
                job = intake.start_job(case_list, user=request.user, source_name="single query",
                                       timeout=data["timeout"])
                self.message_user(request, f"Started {job}.", messages.SUCCESS)
                return redirect("admin:retrieval_retrievaljob_change", job.pk)
        context["form"] = form
        return render(request, "admin/retrieval/upload.html", context)
