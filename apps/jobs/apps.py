from django.apps import AppConfig
from django.db.models.signals import post_migrate

RECLAIM_SCHEDULE = "jobs: reclaim stale items"
DISK_SCHEDULE = "jobs: watch free disk space"


def ensure_reclaim_schedule(sender, using="default", **kwargs):
    """A django-q2 Schedule runs runner.sweep every minute (the finest a Schedule can do): reclaim_stale,
    then held items back on the queue (a server's window may have opened). Workers also reclaim when they
    spawn and, every half lease, after finishing an item (runner._reclaim_now_and_then)."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=RECLAIM_SCHEDULE,
        defaults={"func": "apps.jobs.runner.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1,
                  "repeats": -1})
    Schedule.objects.using(using).update_or_create(
        name=DISK_SCHEDULE,
        defaults={"func": "apps.jobs.diskspace.watch", "schedule_type": Schedule.MINUTES, "minutes": 1,
                  "repeats": -1})


def reclaim_on_worker_start(sender, proc_name=None, **kwargs):
    """A (re)started cluster picks up what a killed one left behind."""
    import logging

    from apps.jobs.runner import reclaim_stale

    try:
        reclaim_stale()
    except Exception:  # never keep a worker from starting; the schedule sweeps again soon
        logging.getLogger("apps.jobs").exception("reclaim at worker start failed")


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self):
        from django_q.signals import post_spawn

        from apps.jobs.notices import on_job_refreshed
        from apps.jobs.signals import job_refreshed

        job_refreshed.connect(on_job_refreshed, dispatch_uid="jobs-mail-on-end")
        post_migrate.connect(ensure_reclaim_schedule, sender=self, dispatch_uid="jobs-reclaim-schedule")
        post_spawn.connect(reclaim_on_worker_start, dispatch_uid="jobs-reclaim-on-spawn")

        from apps.jobs import diskspace
        from apps.jobs.registry import add_check

        add_check(diskspace.hold)  # work writing to a folder below MIN_FREE_GB waits
