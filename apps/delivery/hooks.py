"""Deliveries follow their retrieval: whenever a retrieval job re-derives its status (its rows make
progress), the delivery batches whose cases are now all done are created and queued."""
from django.dispatch import receiver

from apps.jobs.signals import job_refreshed
from apps.retrieval.models import RetrievalJob


@receiver(job_refreshed, dispatch_uid="delivery-follows-retrieval")
def follow(sender, job, **kwargs):
    if sender is RetrievalJob:
        for delivery in job.deliveries.filter(status__in=["pending", "running"], started_at__isnull=False):
            delivery.release_ready()
