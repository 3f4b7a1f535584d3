"""Permissions that span every job app. The model has no table: it only gives the permission a home, so
the admin lists it under "Jobs" and groups can be granted it."""
from django.db import models


class JobAccess(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_all_jobs", "Can see, cancel and retry every user's jobs"),
                       ("start_urgent_jobs", "Can start urgent jobs and raise running jobs to urgent"),
                       ("pause_apps", "Can pause and resume all jobs of an app")]
        verbose_name = "job access"
