"""The `delivery` a retrieval may carry, as an attachment of retrieval's extension registry
(apps/retrieval/extensions.py): registered in DeliveryConfig.ready(), so retrieval never imports delivery."""
from rest_framework import serializers

from apps.delivery.api.serializers import DeliveryOptionsField
from apps.delivery.forms import DeliveryChoiceForm
from apps.delivery.intake import deliver_each, delivery_refusal
from apps.retrieval.extensions import Attachment


def attachment():
    """The `delivery` a retrieval may carry, for retrieval's extension registry: the API field, the
    admin upload's fields, the check, what to do once each retrieval job exists, what the job shows."""
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
