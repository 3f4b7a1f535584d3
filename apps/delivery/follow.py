"""A retrieval that carries a delivery (`{target, mode, batch_size, keep_zip, clear}`): one delivery job
per retrieval job, planned from the case list's lines. Its batches are created and queued as their
cases finish retrieving (apps/delivery/hooks.py); the runner shares the workers between jobs in turn,
so batch 1 travels while batch 2 downloads. Retrieval knows nothing of deliveries: `ATTACHMENT` is
registered with its extension registry (apps/retrieval/extensions.py) in DeliveryConfig.ready()."""
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


def attachment():
    """The `delivery` a retrieval may carry, for retrieval's extension registry: the API field, the
    admin upload's fields, the check, what to do once each retrieval job exists, what the job shows."""
    from rest_framework import serializers

    from apps.delivery.api.serializers import DeliveryOptionsField
    from apps.delivery.forms import DeliveryChoiceForm
    from apps.retrieval.extensions import Attachment

    def started(job, options, user, *, lines=None):
        deliver_each([job], options, user, lines=lines)

    def preview(form) -> str:
        options = form.delivery_options()
        if options is None:
            return ""
        return (f"Each batch of {options['batch_size']} cases goes to {options['target'].name} ({options['mode']}) "
                "as soon as it is retrieved.")

    return Attachment(
        name="delivery",
        request_field=lambda: DeliveryOptionsField(
            required=False, help_text='Deliver the cases in batches as they are retrieved: {"target", "mode": '
                                      '"zip"|"direct", "batch_size", "keep_zip", "clear"}.'),
        started=started, form=DeliveryChoiceForm, form_options=lambda form: form.delivery_options(),
        form_hidden=lambda form: form.delivery_hidden(), preview=preview, refusal=delivery_refusal,
        summary=lambda options: f", delivered to {options['target'].name} in batches",
        job_fields={"deliveries": lambda: serializers.PrimaryKeyRelatedField(
            many=True, read_only=True, help_text="Delivery jobs of its cases.")})
