from django.urls import re_path

from apps.jobs.api.views import job_progress

urlpatterns = [
    re_path(r"^jobs/(?P<app_label>[\w]+)/(?P<model>[\w]+)/(?P<pk>[0-9]+)/progress/?$", job_progress,
            name="job-progress"),
]
