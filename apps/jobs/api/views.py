"""Job API building blocks: JobViewSetMixin (own jobs only, permissions, cancel / retry actions) and the
progress endpoint the admin's progress bars poll."""
from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from apps.jobs.access import job_permissions, visible_jobs
from apps.jobs.models import Job
from pacsportal.permissions import model_permission


class JobViewSetMixin:
    """The base of every job viewset: a user reaches only their own jobs (another user's is a 404) unless
    they hold "view all jobs"; listing and reading need the job's view permission, starting (create) its
    start permission, cancel and retry its change permission. Adds POST {id}/cancel/ and POST {id}/retry/,
    both answering with the job body. A subclass with more actions adds their permissions:

        def get_action_permissions(self):
            return {**super().get_action_permissions(), "report": [model_permission(RetrievalJob, "view")]}
    """

    def get_queryset(self):
        return visible_jobs(super().get_queryset(), self.request.user)

    def get_action_permissions(self) -> dict[str, list[str]]:
        model = self.queryset.model if self.queryset is not None else self.get_queryset().model
        return job_permissions(model)

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


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def job_progress(request, app_label: str, model: str, pk: int):
    """{"id", "status", "completed_at", "progress"} of any job the caller may see; the admin polls it every
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
                     "progress": job.progress()})
