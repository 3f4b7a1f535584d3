"""What /metrics says in the Prometheus text format (pacsportal/metrics.py serves it).

The workers, the receiver and the web are separate processes, so nothing is counted in memory: at each
scrape a custom collector reads the database (traffic from the job items, durations, jobs by status,
queues), the receiver processes' state files (associations active and refused) and runportal's status
file (restarts), and measures the data folders' free space. One scrape costs a few aggregate queries
per job model, whatever the number of rows.

Label values are app labels, job kinds, statuses, server, target and folder names set by an
administrator: never anything of a patient."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from apps.core import dashboard
from apps.core.health import status_path
from apps.delivery.models import DeliveryBatch
from apps.imports.models import ImportedImage
from apps.jobs.holds import item_models
from apps.jobs.models import ItemStatus, Job, JobItem, JobStatus
from apps.photos.models import PhotoUpload
from apps.retrieval.models import RetrievalItem
from apps.retrieval.receiver_check import STATE_FILES, STATE_FRESH_SECONDS
from apps.sending.models import SendItem

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600)  # seconds: an echo .. a long study list row
FINISHED = [ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.TIMED_OUT, ItemStatus.CANCELED]


def job_models() -> list[tuple[type, type]]:
    """(job model, item model) of every app."""
    pairs = [(model._meta.get_field("job").related_model, model) for model in item_models()]
    return sorted(pairs, key=lambda pair: pair[0]._meta.label)


def _labels(model) -> list[str]:
    return [model._meta.app_label, model._meta.model_name]


def traffic() -> list[tuple[str, str, str, int, int | None]]:
    """(direction, app, server, instances, bytes or None): what each app received, filed and sent."""
    rows = []
    for r in RetrievalItem.objects.order_by().values("server_name").annotate(
            n=Sum("instances"), b=Sum("bytes"),
            fn=Sum("instances", filter=Q(status=ItemStatus.SUCCEEDED)),
            fb=Sum("bytes", filter=Q(status=ItemStatus.SUCCEEDED))):
        rows.append(("received", "retrieval", r["server_name"], r["n"] or 0, r["b"] or 0))
        rows.append(("filed", "retrieval", r["server_name"], r["fn"] or 0, r["fb"] or 0))
    for r in SendItem.objects.exclude(job__servers=None).order_by().values("job__servers__name").annotate(
            n=Sum("sent"), b=Sum("bytes", filter=Q(status=ItemStatus.SUCCEEDED))):
        rows.append(("sent", "sending", r["job__servers__name"], r["n"] or 0, r["b"] or 0))
    for r in DeliveryBatch.objects.filter(status=ItemStatus.SUCCEEDED).order_by().values("job__target__name").annotate(
            n=Sum("files"), b=Sum("sent_bytes")):
        rows.append(("sent", "delivery", r["job__target__name"], r["n"] or 0, r["b"] or 0))
    for r in PhotoUpload.objects.filter(status=JobStatus.SUCCEEDED).exclude(dicom_server=None).order_by().values(
            "dicom_server__name").annotate(n=Sum("photos")):
        rows.append(("sent", "photos", r["dicom_server__name"], r["n"] or 0, None))
    rows.append(("filed", "imports", "", ImportedImage.objects.count(), None))
    return rows


def durations(item_model) -> dict[str, tuple[list[int], float]]:
    """Per outcome: cumulative counts for DURATION_BUCKETS and the sum of seconds, from started/finished."""
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    aggregates = {f"le{n}": Count("pk", filter=Q(took__lte=timedelta(seconds=b))) for n, b in enumerate(DURATION_BUCKETS)}
    found = {}
    rows = (item_model.objects.filter(status__in=FINISHED, started_at__isnull=False, finished_at__isnull=False)
            .annotate(took=took).order_by().values("status").annotate(count=Count("pk"), total=Sum("took"), **aggregates))
    for row in rows:
        total = row["total"] or 0
        seconds = total.total_seconds() if isinstance(total, timedelta) else total / 1e6  # SQLite: microseconds
        found[row["status"]] = ([row[f"le{n}"] for n in range(len(DURATION_BUCKETS))] + [row["count"]], seconds)
    return found


def queue(item_model) -> tuple[int, float]:
    """(items waiting, age in seconds of the oldest): pending items, held ones included."""
    waiting = item_model.objects.filter(status=ItemStatus.PENDING).aggregate(
        n=Count("pk"), oldest=Min(Coalesce("queued_at", "job__started_at", "job__created_at")))
    oldest = waiting["oldest"]
    return waiting["n"], (timezone.now() - oldest).total_seconds() if oldest else 0.0


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def receiver_states() -> list[dict]:
    now, states = time.time(), []
    for path in sorted(Path(settings.STAGING_DIR).glob(STATE_FILES)):
        state = _read_json(path)
        if state and now - float(state.get("written_at", 0)) <= STATE_FRESH_SECONDS:
            states.append(state)
    return states


class PortalCollector:
    def collect(self):
        yield from self._traffic()
        yield from self._jobs()
        yield from self._receiver()
        yield from self._processes()
        free = GaugeMetricFamily("pacsportal_data_folder_free_bytes", "Free bytes on the file system of each "
                                 "data folder.", labels=["folder"])
        for row in dashboard.disk():  # the dashboard's folders, measured as it measures them
            free.add_metric([row["folder"]], row["free_bytes"])
        yield free

    def _traffic(self):
        instances = CounterMetricFamily("pacsportal_instances", "DICOM instances (photos, files) received, "
                                        "filed and sent, by app and server (from the job records).",
                                        labels=["direction", "app", "server"])
        size = CounterMetricFamily("pacsportal_bytes", "Bytes received, filed and sent, by app and server.",
                                   labels=["direction", "app", "server"])
        for direction, app, server, count, nbytes in traffic():
            instances.add_metric([direction, app, server], count)
            if nbytes is not None:
                size.add_metric([direction, app, server], nbytes)
        yield instances
        yield size

    def _jobs(self):
        jobs = GaugeMetricFamily("pacsportal_jobs", "Jobs by status.", labels=["app", "job", "status"])
        depth = GaugeMetricFamily("pacsportal_queue_depth", "Items waiting to run (held ones included).",
                                  labels=["app", "job"])
        oldest = GaugeMetricFamily("pacsportal_queue_oldest_seconds", "Age of the oldest waiting item.",
                                   labels=["app", "job"])
        took = HistogramMetricFamily("pacsportal_item_duration_seconds", "How long finished items ran, by "
                                     "app and outcome.", labels=["app", "job", "outcome"])
        for job_model, item_model in job_models():
            labels = _labels(job_model)
            for status, n in job_model.status_counts().items():
                jobs.add_metric([*labels, status], n)
            waiting, age = queue(item_model)
            depth.add_metric(labels, waiting)
            oldest.add_metric(labels, age)
            for outcome, (counts, seconds) in durations(item_model).items():
                buckets = [(str(b), c) for b, c in zip(DURATION_BUCKETS, counts)] + [("+Inf", counts[-1])]
                took.add_metric([*labels, outcome], buckets, seconds)
        yield from (jobs, depth, oldest, took)

    def _receiver(self):
        states = receiver_states()
        active = GaugeMetricFamily("pacsportal_receiver_associations", "Associations the receiver serves now.")
        active.add_metric([], sum(int(s.get("associations", 0)) for s in states))
        limit = GaugeMetricFamily("pacsportal_receiver_association_limit", "Associations it may serve at once.")
        limit.add_metric([], sum(int(s.get("limit", 0)) for s in states))
        refused = CounterMetricFamily("pacsportal_receiver_refused", "Peers the receiver refused (since its "
                                      "processes started).")
        refused.add_metric([], sum(int(s.get("refused", 0)) for s in states))
        processes = GaugeMetricFamily("pacsportal_receiver_processes", "Receiver processes serving.")
        processes.add_metric([], len(states))
        yield from (active, limit, refused, processes)

    def _processes(self):
        status = _read_json(status_path()) or {}
        restarts = CounterMetricFamily("pacsportal_process_restarts", "Restarts of each part of the portal by "
                                       "runportal's supervisor.", labels=["part"])
        up = GaugeMetricFamily("pacsportal_process_up", "1 when the part runs.", labels=["part"])
        for part, state in sorted((status.get("parts") or {}).items()):
            restarts.add_metric([part], int(state.get("restarts", 0)))
            up.add_metric([part], 1 if state.get("up") else 0)
        yield from (restarts, up)


def registry() -> CollectorRegistry:
    """A registry holding only the portal's collector (no process metrics of the web process that scrapes)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(PortalCollector())
    return found


def job_counters() -> dict:
    """The JSON counters /metrics?format=json has always answered: jobs and items by status, per model."""
    counters = {}
    for model in apps.get_models():
        if issubclass(model, (Job, JobItem)) and not model._meta.abstract:
            counters[f"{model._meta.label_lower}.by_status"] = model.status_counts()
    return counters
