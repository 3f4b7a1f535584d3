"""Admin: retrieval jobs with live progress, the case-list upload with a preview of every bad row
before anything runs, a single-query form, and the failed-downloads report as CSV."""
import base64

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from apps.jobs.admin import JobAdminMixin
from apps.jobs.models import ItemStatus
from apps.projects.masking import Mask
from apps.retrieval import extensions, intake
from apps.retrieval.followup import FollowUpRefused, retrieve_found, retry_rows
from apps.retrieval.forms import CaseListUploadForm, ConfirmForm, SingleQueryForm
from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import report_csv_response
from apps.retrieval.results import caselist_response, found_of, masked_found, results_response

ITEMS_PER_PAGE = 100
FOUND_PER_PAGE = 200


def masked_items(job, items) -> list:
    """A project's rows as the page shows them: the pseudonym, the project's UIDs and shifted dates."""
    mask, shown = Mask(job.project), []
    for item in items:
        row = mask.retrieval_row({"PatientID": item.patient_id, "StudyDate": item.study_date,
                                  "StudyInstanceUID": item.study_instance_uid, "error": item.error,
                                  "path": item.path}, item.patient_id, item.study_date)
        item.patient_id, item.study_date, item.study_instance_uid = (row["PatientID"], row["StudyDate"],
                                                                     row["StudyInstanceUID"])
        item.error, item.path = row["error"], row["path"]
        shown.append(item)  # shown only, never saved
    return shown


@admin.register(RetrievalJob)
class RetrievalJobAdmin(JobAdminMixin, admin.ModelAdmin):
    # The items are a paged table (templates/admin/retrieval/retrievaljob/change_form.html), not an
    # inline: a 100,000-row list must not render at once.
    inlines = []
    list_display = ("__str__", "shown_status", "progress", "created_by", "created_at", "report_link")
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
            path("<int:pk>/results.<str:output>", self.admin_site.admin_view(self.results_view),
                 name="retrieval_results"),
            path("<int:pk>/caselist.csv", self.admin_site.admin_view(self.caselist_view), name="retrieval_caselist"),
            path("<int:pk>/retrieve-found/", self.admin_site.admin_view(self.retrieve_found_view),
                 name="retrieval_retrieve_found"),
        ]
        return own + super().get_urls()

    @admin.display(description="Status", ordering="status")
    def shown_status(self, job):
        return job.shown_status

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """One page of the job's items in line order (?items_page=, ?items_status= to filter)."""
        job = self.get_object(request, object_id)
        extra = {}
        if job is not None:
            status = request.GET.get("items_status", "")
            items = job.items.order_by("line", "pk")
            if status:
                items = items.filter(status=status)
            page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("items_page"))
            if job.project_id:
                page.object_list = masked_items(job, page.object_list)
            extra = {"items_page": page,
                     "items_status": status, "item_statuses": ItemStatus.values,
                     "retry_rows": retry_rows(job).exists()}
            if job.mode == RetrievalJob.Mode.QUERY:
                found_page = Paginator(found_of(job).select_related("item"), FOUND_PER_PAGE).get_page(
                    request.GET.get("found_page"))
                if job.project_id:
                    found_page.object_list = masked_found(job, found_page.object_list)
                extra.update(found_page=found_page,
                             can_start_jobs=self.has_start_permission(request))
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="Report")
    def report_link(self, job):
        links = format_html('<a href="{}">failed downloads (CSV)</a>', reverse("admin:retrieval_report", args=[job.pk]))
        if job.mode == RetrievalJob.Mode.QUERY:
            links = format_html('{} · results <a href="{}">CSV</a> <a href="{}">Excel</a>', links,
                                reverse("admin:retrieval_results", args=[job.pk, "csv"]),
                                reverse("admin:retrieval_results", args=[job.pk, "xlsx"]))
        return format_html('{} · <a href="{}">failed and flagged rows as a case list</a>', links,
                           reverse("admin:retrieval_caselist", args=[job.pk]))

    @admin.display(description="Bad rows (not run)")
    def bad_rows(self, job):
        if not job.row_errors:
            return "none"
        shown = [Mask(job.project).retrieval_row(e, "", "") for e in job.row_errors] if job.project_id else (
            job.row_errors)
        rows = format_html_join("", '<tr class="bad-row"><td>{}</td><td><code>{}</code></td><td>{}</td></tr>',
                                ((e["line"], e["text"], e["message"]) for e in shown))
        return format_html('<table class="bad-rows"><thead><tr><th>Line</th><th>Row as written</th>'
                           '<th>Problem</th></tr></thead><tbody>{}</tbody></table>', rows)

    def report_view(self, request, pk):
        self.require_view(request)
        job = self.get_object(request, str(pk))
        if job is None:
            return HttpResponse(status=404)
        return report_csv_response(job)

    def _own_job(self, request, pk):
        self.require_view(request)
        job = self.get_object(request, str(pk))  # another user's job is not there: a 404
        if job is None:
            raise Http404("No such retrieval job.")
        return job

    def results_view(self, request, pk, output):
        job = self._own_job(request, pk)
        if output not in ("csv", "xlsx"):
            raise Http404("Results come as .csv or .xlsx.")
        return results_response(job, output)

    def caselist_view(self, request, pk):
        return caselist_response(self._own_job(request, pk))

    def retrieve_found_view(self, request, pk):
        """The "Retrieve these" button under a query job's results: the ticked studies, or all of them."""
        job = self._own_job(request, pk)
        self.require_start(request)
        if request.method != "POST":
            return redirect("admin:retrieval_retrievaljob_change", pk)
        ticked = request.POST.getlist("study")
        try:
            started = retrieve_found(job, user=request.user,
                                     uids=None if "all" in request.POST else ticked)
        except FollowUpRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return redirect("admin:retrieval_retrievaljob_change", pk)
        self.message_user(request, f"Started {started}: {started.items.count()} studies found by {job}.",
                          messages.SUCCESS)
        return redirect("admin:retrieval_retrievaljob_change", started.pk)

    def upload_view(self, request):
        """Step 1 reads the files and shows every row (bad ones with line and reason); step 2 starts a job
        per file with the very text that was previewed, carried in the form."""
        self.require_start(request)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Upload case lists"}
        if request.method == "POST" and ("confirm" in request.POST or "query_only" in request.POST):
            confirm = extensions.with_forms(ConfirmForm)(request.POST, user=request.user)
            if not confirm.is_valid():
                self.message_user(request, "; ".join(e for errors in confirm.errors.values() for e in errors),
                                  messages.ERROR)
                return redirect("admin:retrieval_upload")
            names, blobs = request.POST.getlist("name"), request.POST.getlist("content")
            try:
                if len(names) != len(blobs):
                    raise ValueError("names and contents do not pair up")
                sources = [(name, base64.b64decode(blob, validate=True)) for name, blob in zip(names, blobs)]
            except ValueError:  # binascii.Error is one: the hidden fields came back altered
                self.message_user(request, "The previewed case lists came back damaged; upload them again.",
                                  messages.ERROR)
                return redirect("admin:retrieval_upload")
            chosen = {a.name: a.form_options(confirm) for a in extensions.attachments() if a.form is not None}
            refusal = extensions.refusal(chosen, request.user)
            if refusal:
                self.message_user(request, refusal, messages.ERROR)
                return redirect("admin:retrieval_upload")
            default = confirm.cleaned_data["default_server"]
            read = intake.read_case_lists(sources, user=request.user, default_server=default)
            mode = RetrievalJob.Mode.QUERY if "query_only" in request.POST else RetrievalJob.Mode.RETRIEVE
            if mode == RetrievalJob.Mode.QUERY and any(options is not None for options in chosen.values()):
                self.message_user(request, "A query moves nothing, so nothing can follow it (such as a delivery): "
                                           "choose none.", messages.ERROR)
                return redirect("admin:retrieval_upload")
            jobs = intake.start_jobs(read, user=request.user, timeout=confirm.cleaned_data["timeout"],
                                     default_server=default, mode=mode, project=confirm.cleaned_data["project"],
                                     **chosen)
            attached = "".join(a.summary(chosen[a.name]) for a in extensions.attachments()
                               if chosen.get(a.name) is not None)
            attached += " (query only: nothing is moved)" if mode == RetrievalJob.Mode.QUERY else ""
            for job, started in zip(jobs, (f for f in read if f.runnable)):
                later = " (being prepared in the background)" if job.preparing else ""
                self.message_user(request, f"Started {job}: {len(started.case_list.rows)} rows{later}, "
                                           f"{len(job.row_errors)} bad rows skipped{attached}.", messages.SUCCESS)
            for refused in (f for f in read if not f.runnable):
                self.message_user(request, f"{refused.name}: {refused.problem}", messages.ERROR)
            return redirect("admin:retrieval_retrievaljob_changelist")
        form = extensions.with_forms(CaseListUploadForm)(request.POST or None, request.FILES or None,
                                                         user=request.user)
        if request.method == "POST" and form.is_valid():
            default = form.cleaned_data["default_server"].name if form.cleaned_data["default_server"] else ""
            previews = intake.read_case_lists([(f.name, f) for f in form.cleaned_data["files"]],
                                              user=request.user, default_server=default)
            for preview in previews:
                preview.encoded = base64.b64encode(preview.content).decode()
            context.update(previews=previews, timeout=form.cleaned_data["timeout"] or "", default_server=default,
                           project=form.cleaned_data["project"] or "",
                           attached=[(a.form_hidden(form), a.preview(form))
                                     for a in extensions.attachments() if a.form is not None],
                           runnable=any(p.runnable for p in previews))
            return render(request, "admin/retrieval/preview.html", context)
        context["form"] = form
        return render(request, "admin/retrieval/upload.html", context)

    def query_view(self, request):
        self.require_start(request)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Retrieve one study"}
        form = SingleQueryForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            text = intake.rows_to_csv([{"PatientID": data["patient_id"], "StudyDate": data["study_date"],
                                        "Modality": data["modality"], "Server": data["server"].name}])
            (read,) = intake.read_case_lists([("single query", text)], user=request.user)
            if read.case_list is None or read.case_list.errors:
                form.add_error(None, "; ".join(e.message for e in read.case_list.errors) if read.case_list
                               else read.problem)
            else:
                (job,) = intake.start_jobs([read], user=request.user, timeout=data["timeout"], project=data["project"])
                self.message_user(request, f"Started {job}.", messages.SUCCESS)
                return redirect("admin:retrieval_retrievaljob_change", job.pk)
        context["form"] = form
        return render(request, "admin/retrieval/upload.html", context)
