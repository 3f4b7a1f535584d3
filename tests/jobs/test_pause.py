"""Pausing a job, a server or a whole app: nothing new is claimed, what runs finishes its item, the state
shows in the job's body and the admin list, and resuming continues with nothing lost or repeated; with a
real django-q2 cluster, and step by step on the broker."""
import pytest
from rest_framework.test import APIClient

from apps.jobs.models import AppPause, JobStatus
from apps.servers.models import EchoJob
from tests.jobs.cluster import QCluster, wait_for
from tests.jobs.conftest import make_echo_job, make_server
from tests.jobs.peers import RecordingEchoSCP
from tests.jobs.test_priority import drain


def states(job) -> dict[str, int]:
    return {k: v for k, v in job.progress().items() if v and k != "total"}


@pytest.mark.django_db(transaction=True)
def test_pause_mid_job_claims_nothing_new_and_resume_runs_every_item_once(tmp_path, django_user_model):
    owner = django_user_model.objects.create_superuser(username="boss", password="x", email="")
    api = APIClient()
    api.force_authenticate(owner)
    scp = RecordingEchoSCP(delay=0.3)
    servers = [make_server(f"S{n}", scp.port, max_associations=2) for n in range(1, 21)]
    job = make_echo_job(servers, user=owner)
    cluster = QCluster(tmp_path / "cluster.log", Q_WORKERS=2, JOB_SLICE_SECONDS=0.5)
    try:
        job.start()
        wait_for(lambda: job.items.filter(status="succeeded").count() >= 3, 60, "three items done")
        paused = api.post(f"/api/echo-jobs/{job.pk}/pause/")
        assert paused.status_code == 200 and paused.json()["paused"] is True
        running_at_pause = set(job.items.filter(status="running").values_list("pk", flat=True))
        done_at_pause = set(job.items.filter(status="succeeded").values_list("pk", flat=True))
        wait_for(lambda: not job.items.filter(status="running").exists(), 30, "running items to finish")
        # the workers are free and busy with other work: they finish another job without touching this one
        other = make_echo_job([make_server("OTHER", scp.port)] * 6, user=owner)
        other.start()
        wait_for(lambda: EchoJob.objects.get(pk=other.pk).status == "succeeded", 30, "the other job")
        finished = set(job.items.filter(status="succeeded").values_list("pk", flat=True))
        assert finished == done_at_pause | running_at_pause, "only the items running at the pause finished"
        assert sum(scp.echoes.values()) - scp.echoes["OTHER"] == len(finished), "no new item reached the PACS"
        body = api.get(f"/api/echo-jobs/{job.pk}/").json()
        assert body["paused"] is True and body["status"] == "running" and body["waiting"].startswith("Paused")
        assert all(i["waiting"] for i in body["items"] if i["status"] == "pending")
        resumed = api.post(f"/api/echo-jobs/{job.pk}/resume/")
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        # well inside the lease (60 s): the resume queued the items, no sweep found them later
        wait_for(lambda: EchoJob.objects.get(pk=job.pk).status != "running", 30, "the job to finish")
    finally:
        cluster.stop()
        scp.shutdown()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, cluster.output()[-2000:]
    assert set(job.items.values_list("attempts", flat=True)) == {1}
    assert all(scp.echoes[s.ae_title] == 1 for s in servers), scp.echoes  # every item exactly once
    assert not job.items.exclude(waiting="").exists()


@pytest.mark.django_db
def test_a_paused_server_holds_its_items_and_the_rest_of_the_job_runs(api, user, echo_scp, broker,
                                                                       django_capture_on_commit_callbacks):
    lk, other = make_server("LK", echo_scp.port), make_server("OTHER", echo_scp.port)
    changed = api.patch("/api/servers/LK/", {"paused": True}, format="json")
    assert changed.status_code == 200 and changed.json()["paused"] is True
    job = make_echo_job([lk, other, lk, other], user=user)
    with django_capture_on_commit_callbacks(execute=True):
        job.start()
    drain(broker)
    assert states(job) == {"pending": 2, "succeeded": 2}
    assert echo_scp.echoes == {"OTHER": 2}
    body = api.get(f"/api/echo-jobs/{job.pk}/").json()
    assert body["waiting"] == "Paused: server LK is paused by an operator." and body["paused"] is False
    with django_capture_on_commit_callbacks(execute=True):
        assert api.patch("/api/servers/LK/", {"paused": False}, format="json").status_code == 200
    assert not job.items.exclude(waiting="").exists(), list(job.items.values_list("waiting", "queued_at"))
    drain(broker)  # the resumed server woke its held items at once
    assert EchoJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
    assert echo_scp.echoes == {"OTHER": 2, "LK": 2}


@pytest.mark.django_db
def test_pausing_an_app_holds_all_its_jobs_until_it_is_resumed(api, echo_scp, broker, admin_client_logged_in,
                                                              django_capture_on_commit_callbacks):
    server = make_server("LK", echo_scp.port)
    first, second = make_echo_job([server] * 2), make_echo_job([server] * 3)
    with django_capture_on_commit_callbacks(execute=True):
        first.start()
    paused = api.post("/api/jobs/apps/servers/pause/")
    assert paused.status_code == 200 and paused.json()["paused"] is True and paused.json()["paused_by"] == "tech"
    with django_capture_on_commit_callbacks(execute=True):
        second.start()  # started while the app is paused: it waits too
    drain(broker)
    assert sum(echo_scp.echoes.values()) == 0
    assert first.waiting_reason() == "Paused: all dicom servers are paused by an operator."
    assert {"app": "servers", "name": "dicom servers"}.items() <= next(
        a for a in api.get("/api/jobs/apps/").json()["apps"] if a["app"] == "servers").items()
    listing = admin_client_logged_in.get("/admin/servers/echojob/").content.decode()
    assert "Paused: all dicom servers are paused" in listing
    with django_capture_on_commit_callbacks(execute=True):
        resumed = api.post("/api/jobs/apps/servers/resume/")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False and not AppPause.objects.exists()
    drain(broker)
    assert sum(echo_scp.echoes.values()) == 5
    assert all(EchoJob.objects.get(pk=j.pk).status == JobStatus.SUCCEEDED for j in (first, second))


@pytest.mark.django_db
def test_pause_and_resume_in_the_admin_show_the_state_in_the_list(admin_client_logged_in, echo_scp, broker,
                                                                   django_capture_on_commit_callbacks):
    job = make_echo_job([make_server("LK", echo_scp.port)] * 3)
    with django_capture_on_commit_callbacks(execute=True):
        job.start()
    client = admin_client_logged_in
    client.post("/admin/servers/echojob/", {"action": "pause_jobs", "_selected_action": [job.pk]})
    drain(broker)
    assert states(job) == {"pending": 3}
    assert '<strong class="job-state">paused</strong>' in client.get("/admin/servers/echojob/").content.decode()
    progress = client.get(f"/api/jobs/servers/echojob/{job.pk}/progress").json()
    assert progress["paused"] is True and progress["state"] == "paused"
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/servers/echojob/", {"action": "resume_jobs", "_selected_action": [job.pk]})
    drain(broker)
    assert EchoJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED and echo_scp.echoes["LK"] == 3


@pytest.mark.django_db
def test_admin_pauses_and_resumes_an_app(admin_client_logged_in, echo_scp, broker,
                                         django_capture_on_commit_callbacks):
    client = admin_client_logged_in
    job = make_echo_job([make_server("LK", echo_scp.port)] * 2)
    response = client.post("/admin/jobs/apppause/add/", {"app_label": "servers"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    pause = AppPause.objects.get(app_label="servers")
    with django_capture_on_commit_callbacks(execute=True):
        job.start()
    drain(broker)
    assert states(job) == {"pending": 2}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/jobs/apppause/", {"action": "resume_apps", "_selected_action": [pause.pk]})
    drain(broker)
    assert not AppPause.objects.exists() and EchoJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


@pytest.mark.django_db
def test_run_inline_leaves_held_items_to_the_workers_and_returns(echo_scp, caplog):
    from apps.jobs.runner import run_inline

    lk, other = make_server("LK", echo_scp.port, paused=True), make_server("OTHER", echo_scp.port)
    job = run_inline(make_echo_job([lk, other, lk]))
    assert states(job) == {"pending": 2, "succeeded": 1} and echo_scp.echoes == {"OTHER": 1}
    assert "2 item(s) wait for the workers: Paused: server LK is paused" in caplog.text


@pytest.mark.django_db
def test_admin_pauses_and_resumes_a_server_and_the_resume_wakes_its_rows(admin_client_logged_in, echo_scp, broker,
                                                                         django_capture_on_commit_callbacks):
    from apps.audit.models import AuditEvent
    from apps.servers.models import DicomServer

    client = admin_client_logged_in
    server = make_server("LK", echo_scp.port)
    client.post("/admin/servers/dicomserver/", {"action": "pause_servers", "_selected_action": [server.pk]})
    assert DicomServer.objects.get(pk=server.pk).paused
    job = make_echo_job([server] * 2)
    with django_capture_on_commit_callbacks(execute=True):
        job.start()
    drain(broker)
    assert states(job) == {"pending": 2} and not echo_scp.echoes
    assert "Paused: server LK is paused" in client.get("/admin/servers/echojob/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/servers/dicomserver/", {"action": "resume_servers", "_selected_action": [server.pk]})
    drain(broker)
    assert EchoJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED and echo_scp.echoes["LK"] == 2
    assert sorted(AuditEvent.objects.filter(action__startswith="server.").values_list("action", flat=True)) == [
        "server.paused", "server.resumed"]
