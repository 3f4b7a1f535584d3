from django.urls import re_path

from apps.jobs.api.views import job_apps, job_progress, pause_app, resume_app

urlpatterns = [
    re_path(r"^jobs/(?P<app_label>[\w]+)/(?P<model>[\w]+)/(?P<pk>[0-9]+)/progress/?$", job_progress,
            name="job-progress"),
    re_path(r"^jobs/apps/?$", job_apps, name="job-apps"),
    re_path(r"^jobs/apps/(?P<app>[\w]+)/pause/?$", pause_app, name="job-app-pause"),
    re_path(r"^jobs/apps/(?P<app>[\w]+)/resume/?$", resume_app, name="job-app-resume"),
]
