from django.apps import AppConfig
from django.db.models.signals import post_migrate

CLEANUP_SCHEDULE = "delivery: clean stale uploads and zips"


def ensure_cleanup_schedule(sender, using="default", **kwargs):
    """Hourly sweep of expired incomplete uploads (receiving end) and old delivery zips (sending end)."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=CLEANUP_SCHEDULE,
        defaults={"func": "apps.delivery.cleanup.clean_stale", "schedule_type": Schedule.HOURLY, "repeats": -1})


class DeliveryConfig(AppConfig):
    name = "apps.delivery"
    label = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from apps.catalog import sources
        from apps.delivery import catalogued, hooks  # noqa: F401  (hooks connects to job progress)
        from apps.delivery.attach import attachment
        from apps.retrieval import extensions

        extensions.register(attachment())
        sources.register("delivery", catalogued.claims)  # a retrieval may carry a delivery; retrieval never imports delivery

        post_migrate.connect(ensure_cleanup_schedule, sender=self, dispatch_uid="delivery-cleanup-schedule")

        from apps.delivery import work
        from apps.delivery.models import DeliveryBatch
        from apps.jobs.registry import register

        register(DeliveryBatch, work.deliver)
