"""Reusable admin for every app's jobs: JobAdminMixin (list with live progress bars, Cancel and Retry
failed actions, built on OwnedAdminMixin: the own-objects rule for any model with an owner) and
JobItemInline (read-only items). Usage:

    class RetrievalItemInline(JobItemInline):
        model = RetrievalItem
        fields = JobItemInline.fields + ["PatientID", "instances"]

    @admin.register(RetrievalJob)
    class RetrievalJobAdmin(JobAdminMixin, admin.ModelAdmin):
        inlines = [RetrievalItemInline]
"""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse
from django.utils.html import format_html

from apps.audit import record
from apps.jobs import holds, priority
from apps.jobs.access import start_permission, visible_jobs
from apps.jobs.models import AppPause
from pacsportal.permissions import model_permission

PAUSE_APPS = "jobs.pause_apps"


def progress_html(job) -> str:
    progress = job.progress()
    done = progress["total"] - progress["pending"] - progress["running"]
    url = reverse("job-progress", args=[job._meta.app_label, job._meta.model_name, job.pk])
    return format_html(
        '<div class="job-progress" data-url="{}" data-status="{}">'
        '<progress max="{}" value="{}"></progress> <span class="job-counters">{}</span> '
        '<strong class="job-state">{}</strong></div>',
        url, job.status, max(progress["total"], 1), done, counters_text(progress), job.state())


ITEM_KEYS = ("pending", "running", "succeeded", "failed", "timed_out", "canceled")
UNITS = {"megabytes": "MB"}


def counters_text(progress: dict) -> str:
    """Same wording as the polling script in templates/admin/jobs/progress_script.html: item counters,
    then the app's own (instances, MB, ...) from extra_progress()."""
    done = progress["total"] - progress["pending"] - progress["running"]
    parts = [f"{done}/{progress['total']} done"]
    parts += [f"{progress[key]} {key.replace('_', ' ')}" for key in ITEM_KEYS if progress[key]]
    parts += [f"{value} {UNITS.get(key, key.replace('_', ' '))}" for key, value in progress.items()
              if key not in ITEM_KEYS and key != "total"]
    return " · ".join(parts)


class JobItemInline(admin.TabularInline):
    fields = ["status", "error", "attempts", "started_at", "finished_at", "worker"]
    extra = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Items are part of their job: whoever may see the job sees its items, as in the API.
        return request.user.has_perm(model_permission(self.parent_model, "view"))


class OwnedAdminMixin:
    """The API's own-objects rule in the admin, for any model with an owner (`created_by`): the list, the
    change, delete and history pages and every bulk action see only the user's own objects, unless they
    hold "view all jobs" (superusers hold every permission); another account's object is a 404, as in
    the API, never "does not exist" with a redirect, nor "forbidden", which would tell that it exists."""

    def get_queryset(self, request):
        return visible_jobs(super().get_queryset(request), request.user)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django's change, delete and history views call this when get_object() finds nothing in
        # get_queryset(): a missing object and another account's answer alike.
        raise Http404(f"No {opts.verbose_name} {object_id} here.")


class JobAdminMixin(OwnedAdminMixin):
    """The base of every job admin: a user lists only their own jobs unless they hold "view all jobs";
    custom views call require_start / require_view, the same permissions as the API twins."""

    list_display = ["__str__", "description", "status", "progress", "created_by", "created_at", "completed_at"]
    list_filter = ["status", "created_at"]
    date_hierarchy = "created_at"
    readonly_fields = ["status", "progress", "description", "created_by", "created_at", "started_at",
                       "completed_at", "cancel_requested", "urgent", "paused", "notify"]
    fields = readonly_fields
    actions = ["cancel_jobs", "retry_failed_items", "pause_jobs", "resume_jobs", "make_urgent"]
    change_list_template = "admin/jobs/job_change_list.html"
    change_form_template = "admin/jobs/job_change_form.html"

    @admin.display(description="Progress")
    def progress(self, job):
        return progress_html(job)

    def has_add_permission(self, request):
        return False  # jobs are started by their app's own page or API, not typed in

    def has_start_permission(self, request) -> bool:
        return request.user.has_perm(start_permission(self.model))

    def require_start(self, request) -> None:
        if not self.has_start_permission(request):
            raise PermissionDenied(f"You may not start {self.model._meta.verbose_name_plural}.")

    def require_view(self, request) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied(f"You may not see {self.model._meta.verbose_name_plural}.")

    def changelist_view(self, request, extra_context=None):
        # The app's "start" links and buttons show only to those who may start (can_start_jobs).
        extra_context = {**(extra_context or {}), "can_start_jobs": self.has_start_permission(request)}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Nothing on a job page is typed in: no Save buttons to wonder about (Cancel/Retry are actions).
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request, queryset):
        for job in queryset:
            job.cancel(user=request.user)
        self.message_user(request, f"Asked {queryset.count()} job(s) to cancel.", messages.SUCCESS)

    @admin.action(description="Retry failed items of selected jobs", permissions=["change"])
    def retry_failed_items(self, request, queryset):
        again = sum(job.retry_failed(user=request.user) for job in queryset)
        self.message_user(request, f"Re-queued {again} failed item(s).", messages.SUCCESS)

    @admin.action(description="Pause selected jobs (running items finish)", permissions=["change"])
    def pause_jobs(self, request, queryset):
        held = sum(job.pause(user=request.user) for job in queryset)
        self.message_user(request, f"Paused {queryset.count()} job(s); {held} item(s) wait.", messages.SUCCESS)

    @admin.action(description="Resume selected jobs", permissions=["change"])
    def resume_jobs(self, request, queryset):
        again = sum(job.resume(user=request.user) for job in queryset)
        self.message_user(request, f"Resumed {queryset.count()} job(s); {again} item(s) queued.", messages.SUCCESS)

    @admin.action(description="Make selected jobs urgent", permissions=["raise"])
    def make_urgent(self, request, queryset):
        for job in queryset:
            job.make_urgent(user=request.user)
        self.message_user(request, f"{queryset.count()} job(s) are urgent now.", messages.SUCCESS)

    def has_raise_permission(self, request) -> bool:
        """Raising a job to urgent needs its change permission and "start urgent jobs" (an admin action's
        permissions are alternatives, so both are asked here)."""
        return self.has_change_permission(request) and priority.may_start_urgent(request.user)


class AppPauseForm(forms.ModelForm):
    app_label = forms.ChoiceField(label="App", help_text="Every job of this app waits: nothing new starts, "
                                                         "running items finish.")

    class Meta:
        model = AppPause
        fields = ["app_label"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        paused = set(AppPause.objects.values_list("app_label", flat=True))
        self.fields["app_label"].choices = [(label, holds.app_name(label)) for label in holds.job_apps()
                                            if label not in paused]


@admin.register(AppPause)
class AppPauseAdmin(admin.ModelAdmin):
    """Pause a whole app (add a row) or resume it (delete the row); the API twin is /api/jobs/apps/."""

    form = AppPauseForm
    list_display = ["app_label", "paused_by", "paused_at"]
    actions = ["resume_apps"]

    def has_add_permission(self, request):
        return request.user.has_perm(PAUSE_APPS)

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm(PAUSE_APPS)

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(PAUSE_APPS) or super().has_view_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # resume_apps wakes what waited; a bare delete would not
        return actions

    def save_model(self, request, obj, form, change):
        held = holds.pause_app(obj.app_label, request.user)
        obj.pk = AppPause.objects.get(app_label=obj.app_label).pk
        record(request.user, "app.paused", f"app {obj.app_label}", held_items=held)

    def delete_model(self, request, obj):
        released = holds.resume_app(obj.app_label)
        record(request.user, "app.resumed", f"app {obj.app_label}", released_items=released)

    @admin.action(description="Resume selected apps", permissions=["delete"])
    def resume_apps(self, request, queryset):
        for pause in list(queryset):
            self.delete_model(request, pause)
        self.message_user(request, "Resumed; waiting items are back on the queue.", messages.SUCCESS)
