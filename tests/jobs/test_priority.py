"""Urgent jobs: "urgent": true on a job POST (with the permission "start urgent jobs"), an admin action
raising a running job, and workers taking the most urgent waiting job first, on the broker and in a real
django-q2 cluster, while jobs of one priority keep their turns."""
import time

import pytest
from django.contrib.auth.models import Permission

from apps.audit.models import AuditEvent
from apps.jobs.models import JobStatus
from apps.jobs.priority import urgent_jobs
from apps.jobs.runner import run_item
from apps.servers.models import EchoItem, EchoJob
from tests.jobs.cluster import QCluster, wait_for
from tests.jobs.conftest import make_echo_job, make_server
from tests.jobs.peers import RecordingEchoSCP
from tests.jobs.test_driving import queued_items

LABEL = "servers.EchoItem"


def first_started(job) -> float:
    return min(job.items.exclude(started_at=None).values_list("started_at", flat=True)).timestamp()


@pytest.mark.django_db
def test_urgent_post_marks_the_job_and_an_ordinary_post_does_not(api, echo_scp):
    make_server("LK", echo_scp.port)
    urgent = api.post("/api/echo-jobs/", {"urgent": True}, format="json")
    assert urgent.status_code == 201, urgent.content
    assert urgent.json()["urgent"] is True and EchoJob.objects.get(pk=urgent.json()["id"]).urgent
    plain = api.post("/api/echo-jobs/", {"urgent": "false"}, format="json")
    assert plain.status_code == 201 and plain.json()["urgent"] is False
    assert not EchoJob.objects.get(pk=plain.json()["id"]).urgent
    # the flag lives for the request only: a job made afterwards in this thread is ordinary
    assert not make_echo_job([make_server("B", echo_scp.port)]).urgent


@pytest.mark.django_db
def test_urgent_must_be_a_boolean(api):
    response = api.post("/api/echo-jobs/", {"urgent": "very"}, format="json")
    assert response.status_code == 400 and response.json() == {"urgent": ["Must be true or false."]}
    assert not EchoJob.objects.exists()


@pytest.mark.django_db
def test_an_ordinary_message_gives_its_worker_to_the_urgent_job_first(echo_scp, broker, settings,
                                                                      django_capture_on_commit_callbacks):
    # One turn for all of the big job's items: on a loaded machine 30 of them outlast the 2 s slice, and the
    # worker then gives its turn to the other waiting job (test_urgent_jobs_take_turns... covers turns).
    settings.JOB_SLICE_SECONDS = 600
    server = make_server("LK", echo_scp.port, max_associations=2)
    big, other = make_echo_job([server] * 30), make_echo_job([server] * 5)
    with urgent_jobs():
        urgent = make_echo_job([server] * 3)
    with django_capture_on_commit_callbacks(execute=True):
        big.start()
        other.start()
        urgent.start()
    messages = queued_items(broker)
    broker.purge_queue()
    run_item(LABEL, messages[0])  # the big job's message: its worker drives the urgent job instead
    assert urgent.progress()["succeeded"] == 3 and EchoJob.objects.get(pk=urgent.pk).status == JobStatus.SUCCEEDED
    assert big.progress()["pending"] == 30 and other.progress()["pending"] == 5, "no ordinary item ran first"
    assert queued_items(broker) == [messages[0]], "the big job's message went back on the broker, not lost"
    run_item(LABEL, messages[0])
    assert big.progress()["succeeded"] == 30


def drain(broker, limit: int = 200) -> None:
    """Be a one-worker cluster: take the broker's messages in order and run each, until none is left."""
    from django_q.signing import SignedPackage

    for _ in range(limit):
        taken = broker.dequeue()
        if not taken:
            return
        for ack_id, payload in taken:
            broker.acknowledge(ack_id)
            run_item(*SignedPackage.loads(payload)["args"])
    raise AssertionError("the broker never emptied")


@pytest.mark.django_db
def test_urgent_jobs_take_turns_among_themselves_and_ordinary_ones_wait(echo_scp, broker, settings,
                                                                         django_capture_on_commit_callbacks):
    settings.JOB_SLICE_SECONDS = 0  # a turn is one item
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}
    server = make_server("LK", echo_scp.port, max_associations=1)
    big, ordinary = make_echo_job([server] * 10), make_echo_job([server] * 2)
    with urgent_jobs():
        first_urgent, second_urgent = make_echo_job([server] * 3), make_echo_job([server] * 3)
    with django_capture_on_commit_callbacks(execute=True):
        for job in (big, ordinary, first_urgent, second_urgent):
            job.start()
    drain(broker)
    order = list(EchoItem.objects.order_by("started_at", "pk").values_list("job_id", flat=True))
    assert order[:6] == [first_urgent.pk, second_urgent.pk] * 3, "urgent first, in turns"
    assert set(order[6:]) == {big.pk, ordinary.pk} and order[6:8] == [big.pk, ordinary.pk], "then fair turns"
    assert all(EchoJob.objects.get(pk=j.pk).status == JobStatus.SUCCEEDED
               for j in (big, ordinary, first_urgent, second_urgent))
    assert set(EchoItem.objects.values_list("attempts", flat=True)) == {1}, "nothing ran twice"


@pytest.mark.django_db
def test_admin_raises_a_running_job_with_the_permission_only(admin_client_logged_in, django_user_model):
    from django.test import Client

    clerk = django_user_model.objects.create_user(username="clerk", password="x", is_staff=True)
    job = make_echo_job([make_server("LK", 104)] * 2, user=clerk)
    job.start()
    clerk.user_permissions.set(Permission.objects.filter(codename__in=["view_echojob", "change_echojob"]))
    client = Client()
    client.force_login(clerk)
    page = client.get("/admin/servers/echojob/").content.decode()
    assert "pause_jobs" in page
    assert "make_urgent" not in page  # the action is offered only to who may use it
    client.post("/admin/servers/echojob/", {"action": "make_urgent", "_selected_action": [job.pk]})
    assert not EchoJob.objects.get(pk=job.pk).urgent

    admin_client_logged_in.post("/admin/servers/echojob/", {"action": "make_urgent", "_selected_action": [job.pk]})
    assert EchoJob.objects.get(pk=job.pk).urgent
    assert AuditEvent.objects.filter(action="job.raised", actor=admin_client_logged_in.user).exists()
    assert "urgent" in admin_client_logged_in.get("/admin/servers/echojob/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_real_workers_start_a_one_row_urgent_job_within_one_slice_ahead_of_waiting_jobs(tmp_path):
    """Two workers drive a long job; three ordinary jobs queue, then a one-row urgent one. Fair turns alone
    would run the three first; the urgent row starts within JOB_SLICE_SECONDS (plus the item running then
    and the broker's poll), before any of them."""
    slice_seconds = 2.0
    scp = RecordingEchoSCP(delay=0.2)
    server = make_server("LK", scp.port, max_associations=4)
    long_job = make_echo_job([server] * 200)
    cluster = QCluster(tmp_path / "cluster.log", Q_WORKERS=2, JOB_SLICE_SECONDS=slice_seconds)
    try:
        long_job.start()
        wait_for(lambda: long_job.items.filter(status="succeeded").exists(), 60, "the long job to run")
        waiting = [make_echo_job([server] * 10) for _ in range(3)]
        for job in waiting:
            job.start()
        with urgent_jobs():
            urgent = make_echo_job([server])
        urgent.start()
        asked = time.time()
        wait_for(lambda: EchoJob.objects.get(pk=urgent.pk).status == JobStatus.SUCCEEDED, 60, "the urgent job")
    finally:
        cluster.stop()
        scp.shutdown()
    began = first_started(urgent) - asked
    assert began < slice_seconds + 0.2 + 0.1 + 1.0, f"the urgent row began {began:.2f} s after it was started"
    for job in waiting:
        started = job.items.exclude(started_at=None)
        assert not started.exists() or first_started(job) > first_started(urgent), "an ordinary job went first"
    assert "database is locked" not in cluster.output().lower()
    print(f"urgent one-row job began {began:.2f} s after its start (JOB_SLICE_SECONDS={slice_seconds})")


@pytest.mark.django_db
def test_every_job_api_starts_urgent_jobs(api, settings, tmp_path):
    """The flag is read once for every job API (JobViewSetMixin): retrievals (JSON and a form's field),
    sends and imports are urgent when asked, whatever their own body's fields."""
    from apps.imports.models import ImportJob
    from apps.retrieval.models import RetrievalJob
    from apps.sending.models import SendJob

    make_server("LK", 104)
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    (tmp_path / "cases").mkdir()
    rows = {"rows": [{"PatientID": "P1", "StudyDate": "2025-01-01", "Modality": "CT"}], "server": "LK"}
    json_list = api.post("/api/retrievals/", {**rows, "urgent": True}, format="json")
    assert json_list.status_code == 201, json_list.content
    from django.core.files.uploadedfile import SimpleUploadedFile
    form = api.post("/api/retrievals/", {"file": SimpleUploadedFile("a.csv", b"P2,2025-01-02,MR,LK\n"),
                                         "urgent": "true"}, format="multipart")
    assert form.status_code == 201, form.content
    assert list(RetrievalJob.objects.order_by("pk").values_list("urgent", flat=True)) == [True, True]
    sent = api.post("/api/sends/", {"servers": ["LK"], "path": str(tmp_path / "cases"), "urgent": True},
                    format="json")
    assert sent.status_code == 201, sent.content
    imported = api.post("/api/imports/", {"source_path": str(tmp_path / "cases"), "urgent": True}, format="json")
    assert imported.status_code == 201, imported.content
    assert SendJob.objects.get().urgent and ImportJob.objects.get().urgent
