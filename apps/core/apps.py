from django.apps import AppConfig
from django.db.models.signals import post_migrate

RETENTION_SCHEDULE = "core: retention"


def ensure_retention_schedule(sender, using="default", **kwargs):
    """Retention runs once a day (apps/core/retention)."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=RETENTION_SCHEDULE,
        defaults={"func": "apps.core.retention.run", "schedule_type": Schedule.DAILY, "repeats": -1})


class CoreConfig(AppConfig):
    """What belongs to the portal as a whole rather than to one workflow: starting every process
    (`runportal`), the first admin account (`ensure_admin`), and the admin site's branding and order."""

    name = "apps.core"
    label = "core"
    verbose_name = "PACS Portal"

    def ready(self):
        from django.contrib import admin

        from apps.core.admin_site import restrict_to_superusers

        restrict_to_superusers(admin.site)
        from django.apps import apps

        # This app has no models, so no post_migrate of its own: the schedule is made with the jobs app's.
        post_migrate.connect(ensure_retention_schedule, sender=apps.get_app_config("jobs"),
                             dispatch_uid="core-retention-schedule")

