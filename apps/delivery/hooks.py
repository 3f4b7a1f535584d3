"""Deliveries follow their retrieval: whenever a retrieval job re-derives its status (one of its rows
finished), the delivery batches whose cases are now all done are queued, and a paced retrieval queues
its next batch of rows. A canceled paced delivery lets its retrieval queue all the rows it held."""
from django.dispatch import receiver

from apps.jobs.signals import job_refreshed


@receiver(job_refreshed, dispatch_uid="delivery-follows-retrieval")
def follow(sender, job, **kwargs):
    from apps.delivery.follow import start_next_rows
    from apps.delivery.models import DeliveryJob
    from apps.retrieval.models import RetrievalJob

    if sender is RetrievalJob:
        for delivery in job.deliveries.filter(status__in=["pending", "running"], started_at__isnull=False):
            delivery.release_ready()
        start_next_rows(job)
    elif sender is DeliveryJob and job.paced and job.cancel_requested and job.retrieval_id:
        start_next_rows(job.retrieval)
