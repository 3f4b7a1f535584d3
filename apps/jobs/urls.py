from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.jobs.api.views import EchoJobViewSet, job_progress

router = SimpleRouter()
router.register("echo-jobs", EchoJobViewSet)
urlpatterns = [
    path("jobs/<str:app_label>/<str:model>/<int:pk>/progress", job_progress, name="job-progress"),
    *router.urls,
]
