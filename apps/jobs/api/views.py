"""Job API building blocks: JobViewSetMixin (own jobs only, permissions, cancel / retry / pause / resume
actions, "urgent"), the progress endpoint the admin's progress bars poll, and pausing a whole app."""
from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from apps.audit import record
from apps.jobs import holds, notices, priority
from apps.jobs.access import job_permissions, visible_jobs
from apps.jobs.models import AppPause, Job

PAUSE_APPS = "jobs.pause_apps"
from pacsportal.permissions import model_permission


class JobViewSetMixin:
    """The base of every job viewset: a user reaches only their own jobs (another user's is a 404) unless
    they hold "view all jobs"; listing and reading need the job's view permission, starting (create) its
    start permission, cancel, retry, pause and resume its change permission. Adds POST {id}/cancel/,
    {id}/retry/, {id}/pause/ and {id}/resume/, each answering with the job body. `"urgent": true` in a
    create's body (JSON or form field) needs "start urgent jobs" and makes every job the request creates
    urgent (apps/jobs/priority.py); `"notify": true` has each of them e-mail its owner when it ends
    (apps/jobs/notices.py). A subclass with more actions adds their permissions:

        def get_action_permissions(self):
            return {**super().get_action_permissions(), "report": [model_permission(RetrievalJob, "view")]}
    """

    def get_queryset(self):
        return visible_jobs(super().get_queryset(), self.request.user)

    def get_action_permissions(self) -> dict[str, list[str]]:
        model = self.queryset.model if self.queryset is not None else self.get_queryset().model
        return job_permissions(model)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action == "create":
            # Set for the handler that runs next (every job it creates is urgent); reset when the
            # response is finalized, whatever happened in between.
            self._urgent_token = priority.begin(urgent_requested(request))
            self._notify_token = notices.begin(flag_requested(request, "notify"))

    def finalize_response(self, request, response, *args, **kwargs):
        token = getattr(self, "_urgent_token", None)
        if token is not None:
            priority.end(token)
            self._urgent_token = None
        token = getattr(self, "_notify_token", None)
        if token is not None:
            notices.end(token)
            self._notify_token = None
        return super().finalize_response(request, response, *args, **kwargs)

    def _on_job(self, method: str) -> Response:
        getattr(self.get_object(), method)(user=self.request.user)
        return Response(self.get_serializer(self.get_object()).data)  # fetched again: items were prefetched

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        return self._on_job("cancel")

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def retry(self, request, *args, **kwargs):
        return self._on_job("retry_failed")

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request, *args, **kwargs):
        return self._on_job("pause")

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, *args, **kwargs):
        return self._on_job("resume")


TRUE_WORDS, FALSE_WORDS = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def flag_requested(request, field: str) -> bool:
    """A create body's boolean `field`: a JSON boolean or a form field's true/false; anything else is a
    400 naming the field."""
    try:
        raw = request.data.get(field, False)
    except AttributeError:  # a JSON list as the body: the app's own validation answers for it
        return False
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return raw.strip().lower() in TRUE_WORDS
    raise ValidationError({field: ["Must be true or false."]})


def urgent_requested(request) -> bool:
    """The create body's "urgent" (flag_requested). Asking for it without the permission is a 403 naming
    the permission."""
    urgent = flag_requested(request, "urgent")
    if urgent and not priority.may_start_urgent(request.user):
        raise ApiPermissionDenied(priority.refusal())
    return urgent


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def job_progress(request, app_label: str, model: str, pk: int):
    """{"id", "status", "completed_at", "urgent", "paused", "waiting", "state", "progress"} of any job the caller may see; the admin polls it every
    2 s. Needs the job's view permission, like the job's own page."""
    try:
        job_model = apps.get_model(app_label, model)
    except LookupError:
        raise Http404("No such job type.")
    if not issubclass(job_model, Job):
        raise Http404("No such job type.")
    if not request.user.has_perm(model_permission(job_model, "view")):
        raise PermissionDenied(f"You may not see {job_model._meta.verbose_name_plural}.")
    try:
        job = visible_jobs(job_model.objects.all(), request.user).get(pk=pk)
    except job_model.DoesNotExist:
        raise Http404("No such job.")
    return Response({"id": job.pk, "status": job.status, "completed_at": job.completed_at,
                     "urgent": job.urgent, "paused": job.paused, "waiting": job.waiting_reason(),
                     "state": job.state(), "progress": job.progress()})


def _app_entry(label: str) -> dict:
    pause = AppPause.objects.filter(app_label=label).select_related("paused_by").first()
    return {"app": label, "name": holds.app_name(label), "paused": pause is not None,
            "paused_by": pause.paused_by.get_username() if pause and pause.paused_by else None,
            "paused_at": pause.paused_at if pause else None}


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def job_apps(request):
    """{"apps": [{"app", "name", "paused", "paused_by", "paused_at"}]}: every app with jobs and whether an
    operator paused it. Needs "view paused app" or "pause apps"."""
    if not (request.user.has_perm("jobs.view_apppause") or request.user.has_perm(PAUSE_APPS)):
        raise PermissionDenied("You may not see which apps are paused: it needs the permission \"view paused "
                               "app\" (jobs.view_apppause).")
    return Response({"apps": [_app_entry(label) for label in holds.job_apps()]})


def _pause_or_resume(request, app: str, pause: bool):
    if not request.user.has_perm(PAUSE_APPS):
        raise PermissionDenied(f"You may not {'pause' if pause else 'resume'} apps: it needs the permission "
                               f"\"pause apps\" ({PAUSE_APPS}).")
    if app not in holds.job_apps():
        raise Http404(f"No app '{app[:40]}' has jobs; use one of {', '.join(holds.job_apps())}.")
    if pause:
        held = holds.pause_app(app, request.user)
        record(request.user, "app.paused", f"app {app}", held_items=held)
    else:
        released = holds.resume_app(app)
        record(request.user, "app.resumed", f"app {app}", released_items=released)
    return Response(_app_entry(app))


@extend_schema(request=None, responses=OpenApiTypes.OBJECT)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def pause_app(request, app: str):
    """Pause every job of an app (all retrievals, all sends…): nothing new starts, running items finish."""
    return _pause_or_resume(request, app, True)


@extend_schema(request=None, responses=OpenApiTypes.OBJECT)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def resume_app(request, app: str):
    """Resume an app's jobs: what waited goes back on the queue."""
    return _pause_or_resume(request, app, False)
