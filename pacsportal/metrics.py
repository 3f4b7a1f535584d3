"""GET /metrics: job and item counters per app, for monitoring (staff only: it counts every user's jobs)."""
from django.apps import apps
from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser

from apps.jobs.models import Job, JobItem


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
@permission_classes([IsAdminUser])
def metrics(request):
    counters = {}
    for model in apps.get_models():
        if issubclass(model, Job) and not model._meta.abstract:
            counters[f"{model._meta.label_lower}.by_status"] = model.status_counts()
        if issubclass(model, JobItem) and not model._meta.abstract:
            counters[f"{model._meta.label_lower}.by_status"] = model.status_counts()
    return JsonResponse(counters)
