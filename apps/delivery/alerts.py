"""A delivery target that keeps refusing needs a person (its server down, its disk full, our access to it
withdrawn): each refused batch reports it, and the operators get one e-mail per target per hour with the
number of batches it refused in that hour. The message names the target and the job, never a case."""
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.delivery.models import DeliveryBatch
from apps.jobs.models import ItemStatus
from apps.jobs.notices import job_link
from apps.notify.operators import alert_operators


def target_refused(batch) -> bool:
    job, target = batch.job, batch.job.target
    since = timezone.now() - timedelta(seconds=settings.OPERATOR_ALERT_SECONDS)
    refused = 1 + DeliveryBatch.objects.filter(job__target=target, status__in=[ItemStatus.FAILED, ItemStatus.TIMED_OUT],
                                               finished_at__gte=since).exclude(pk=batch.pk).count()
    return alert_operators(
        f"target-refusing:{target.name}", f"Delivery target {target.name} refuses batches",
        f"Batch {batch.number} of delivery job #{job.pk} to the target {target.name} ({target.kind}) failed; "
        f"{refused} batch(es) to it failed within the last {settings.OPERATOR_ALERT_SECONDS // 60} minutes. "
        f"Retry the job once the target takes deliveries again.\n\nDetails: {job_link(job)}")
