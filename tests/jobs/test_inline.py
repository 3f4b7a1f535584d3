"""runner.run_inline(job): the one way to run a job here and now (the CLI, the photo page): every
pending item in order, items the work adds meanwhile too, nothing through the broker, the start audited."""
import pytest
from django_q.models import OrmQ

from apps.audit.models import AuditEvent
from apps.jobs import registry
from apps.jobs.runner import run_inline
from apps.servers.models import EchoItem
from tests.jobs.conftest import make_echo_job, make_server


@pytest.mark.django_db
def test_run_inline_runs_every_item_here_in_order_with_those_added_meanwhile(monkeypatch, django_user_model):
    user = django_user_model.objects.create_user("tech")
    job = make_echo_job([make_server("LK", 104)] * 2)
    ran = []

    def process(item, ctx):
        ran.append(item.server_name)
        if len(ran) == 1:  # the first item adds one, as an import's scan adds its batches
            EchoItem.objects.create(job=item.job, server_name="LATE")
        item.result["elapsed_ms"] = 1.0
    monkeypatch.setitem(registry.PROCESSORS, "servers.EchoItem", process)
    seen = []
    job = run_inline(job, user=user, on_progress=lambda j: seen.append((j.status, j.items.filter(
        status="succeeded").count())))
    assert ran == ["LK", "LK", "LATE"]
    assert seen == [("running", 1), ("running", 2), ("succeeded", 3)]
    assert job.status == "succeeded" and job.started_at is not None and job.completed_at is not None
    assert not OrmQ.objects.exists(), "run_inline put work on the broker"
    assert AuditEvent.objects.get(action="job.started").actor == user


@pytest.mark.django_db
def test_run_inline_reports_a_failed_item_in_the_job(monkeypatch):
    job = make_echo_job([make_server("LK", 104)])

    def process(item, ctx):
        raise RuntimeError("boom")
    monkeypatch.setitem(registry.PROCESSORS, "servers.EchoItem", process)
    job = run_inline(job)
    assert job.status == "failed"
    assert job.items.get().error == "Internal error (RuntimeError); the worker log has the details."
