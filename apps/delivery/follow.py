"""A retrieval that carries a delivery (`{target, mode, batch_size, keep_zip, clear}`): one delivery job
per retrieval job. Its batches are queued as their cases finish retrieving (and at once for any that
finished before the delivery existed), so batch 1 travels while batch 2 is still downloading."""
from apps.delivery.models import DeliveryJob

PERMISSION = "delivery.add_deliveryjob"
REFUSED = "This account may not start deliveries (it needs the 'delivery.add_deliveryjob' permission)."


def may_deliver(user) -> bool:
    return bool(user and user.has_perm(PERMISSION))


def deliver_each(retrievals, options: dict | None, user) -> list[DeliveryJob]:
    if not options:
        return []
    options = dict(options)
    target = options.pop("target")
    return [DeliveryJob.for_retrieval(job, target, user=user, **options) for job in retrievals]
