"""What a send batch does (registered with the runner in apps.py): batch.py sends it to every destination."""
from apps.sending.batch import send_batch


def send(item, ctx) -> None:
    send_batch(item, ctx)
