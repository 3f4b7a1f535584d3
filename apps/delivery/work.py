"""What a delivery batch does (registered with the runner in apps.py): deliver.py builds and sends it."""
from apps.delivery.deliver import deliver_batch
from apps.jobs.errors import ItemFailed


def deliver(item, ctx) -> None:
    if item.job.project_id:  # never send identified data for a job that asked for a project
        raise ItemFailed(f"Delivering for research project {item.job.project} is not available yet: nothing was "
                         "sent (de-identification is not wired into delivery).")
    deliver_batch(item, ctx)
