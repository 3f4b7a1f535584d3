"""A retrieval that carries a delivery (`{target, mode, batch_size, keep_zip, clear}`): one delivery job
per retrieval job, planned from the case list's lines. Its batches are created and queued as their
cases finish retrieving (apps/delivery/hooks.py); the runner shares the workers between jobs in turn,
so batch 1 travels while batch 2 downloads. Retrieval knows nothing of deliveries: `ATTACHMENT` is
registered with its extension registry (apps/retrieval/extensions.py) in DeliveryConfig.ready()
(apps/delivery/attach.py)."""
from apps.delivery.models import DeliveryJob
from apps.jobs.access import start_permission

REFUSED = "This account may not start deliveries (it needs the 'delivery.add_deliveryjob' permission)."


def may_deliver(user) -> bool:
    return bool(user and user.has_perm(start_permission(DeliveryJob)))


def delivery_refusal(user, options: dict | None) -> str | None:
    """Why this user may not start this delivery, or None: the start permission, and for a PACS target
    "send" access to its server."""
    if not options:
        return None
    if not may_deliver(user):
        return REFUSED
    server = options["target"].server
    if server is not None and not server.may(user, "send"):
        return server.refusal("send")
    return None


def deliver_each(retrievals, options: dict | None, user, *, lines: list[int] | None = None) -> list[DeliveryJob]:
    """Attach a delivery to each retrieval job (`lines`: its case-list lines, while its rows are still
    being created)."""
    if not options:
        return []
    options = dict(options)
    target = options.pop("target")
    return [DeliveryJob.for_retrieval(job, target, user=user, lines=lines, **options) for job in retrievals]

