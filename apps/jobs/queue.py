"""Putting a job's items on the django-q2 broker: the one way work is queued. It imports no model (items
arrive as a queryset), so models, intakes and the runner all call it without a circle."""
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

RUN_ITEM = "apps.jobs.runner.run_item"


def push(label: str, pk: int) -> None:
    """One broker message: a worker runs item `pk` of model `label`, then drives its job."""
    async_task(RUN_ITEM, label, pk, group=label)


def enqueue(job, items=None, *, after_commit: bool = True) -> int:
    """Mark the job's `items` (a queryset of its items; default every pending one) queued with one UPDATE
    and, once the current transaction commits (a worker must see them), put job.parallelism() messages
    for the first of them on the broker: one per worker the job may use, not one per item. Each message's
    worker runs item after item of the job (runner.run_item), so a 100,000-row list is a handful of
    messages, and a canceled job leaves only those few, which find nothing pending and end at once.
    `after_commit=False` pushes at once: for a caller whose writes are already committed (a sweep
    re-queuing what a dead cluster left). Returns how many items were marked."""
    if items is None:
        items = job.items.filter(status="pending")
    marked = items.update(queued_at=timezone.now())
    label = items.model._meta.label
    pks = list(items.order_by("pk").values_list("pk", flat=True)[:max(1, job.parallelism())])
    if after_commit:
        transaction.on_commit(lambda: [push(label, pk) for pk in pks])
    else:
        for pk in pks:
            push(label, pk)
    return marked


def later(task: str, *args) -> None:
    """Put one plain django-q2 task (a dotted function path) on the broker once the current transaction
    commits: work that is not an item, such as creating a long list's rows in the background."""
    transaction.on_commit(lambda: async_task(task, *args))
