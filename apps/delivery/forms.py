from django import forms

from apps.delivery.models import DeliveryJob, DeliveryTarget


class DeliveryChoiceForm(forms.Form):
    """Optional delivery fields for forms that start retrievals (the admin's case-list upload)."""

    delivery_target = forms.ModelChoiceField(DeliveryTarget.objects.all(), required=False, to_field_name="name",
                                             label="Deliver to",
                                             help_text="Optional: send each batch of cases there once it is retrieved.")
    delivery_mode = forms.ChoiceField(choices=DeliveryJob.Mode.choices, required=False, initial=DeliveryJob.Mode.ZIP,
                                      label="Delivery mode")
    delivery_batch_size = forms.IntegerField(min_value=1, max_value=10000, required=False, initial=20,
                                             label="Cases per batch")

    def delivery_options(self) -> dict | None:
        target = self.cleaned_data.get("delivery_target")
        if target is None:
            return None
        return {"target": target, "mode": self.cleaned_data.get("delivery_mode") or DeliveryJob.Mode.ZIP,
                "batch_size": self.cleaned_data.get("delivery_batch_size") or 20}

    def delivery_hidden(self) -> dict:
        """The chosen values, for a preview page to carry to its confirm step."""
        options = self.delivery_options()
        if options is None:
            return {}
        return {"delivery_target": options["target"].name, "delivery_mode": options["mode"],
                "delivery_batch_size": options["batch_size"]}
