"""What a delivery batch does (registered with the runner in apps.py): deliver.py builds and sends it."""
from apps.delivery.deliver import deliver_batch


def deliver(item, ctx) -> None:
    deliver_batch(item, ctx)
