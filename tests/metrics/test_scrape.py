"""/metrics over real HTTP after a real retrieval from Orthanc through the real receiver process: the
numbers match what Orthanc holds and what was filed, `promtool check metrics` accepts the text, and the
receiver's refusals are counted."""
import subprocess
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from apps.jobs import runner
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer
from tests.jobs.cluster import wait_for
from tests.metrics.conftest import value
from tests.receiver_process import receiver_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]


def day(study) -> str:
    d = study["StudyDate"]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def promtool(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_a_retrieval_is_counted_as_orthanc_holds_it_and_promtool_accepts_the_text(
        scraper, api, settings, tmp_path, orthanc, orthanc_dataset):
    peer = orthanc.peer()
    DicomServer.objects.create(name="LK", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                               retrieve_method="c-move", retries=0)
    with receiver_process(settings, tmp_path, orthanc, "METRICSRX", RECEIVER_MAX_ASSOCIATIONS="4",
                          RECEIVER_PROCESSES="1") as port:
        studies = orthanc_dataset["studies"][:2]
        rows = [{"PatientID": s["PatientID"], "StudyDate": day(s), "Modality": s["Modality"], "Server": "LK"}
                for s in studies]
        rows.append({"PatientID": studies[0]["PatientID"], "StudyDate": "1999-01-01", "Modality": "CT",
                     "Server": "LK"})
        response = api.post("/api/retrievals/", {"rows": rows}, format="json")
        assert response.status_code == 201, response.content
        job = RetrievalJob.objects.get(pk=response.json()["id"])
        for item in job.items.all():
            runner.run_item(item._meta.label, item.pk)
        job.refresh_from_db()
        assert job.status == "partial"

        stranger = AE(ae_title="STRANGER")  # no server's AE title: the receiver refuses it
        stranger.add_requested_context(CTImageStorage)
        refused = stranger.associate("127.0.0.1", port, ae_title="METRICSRX")
        assert not refused.is_established
        samples = wait_for(lambda: (s := scraper.samples()) and value(s, "pacsportal_receiver_refused_total") >= 1
                           and s, 30, "the receiver's refusal in /metrics")
        text = scraper.text()

    expected = sum(len(orthanc.study_instances(s["StudyInstanceUID"])) for s in studies)
    filed = [p for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm")]
    assert len(filed) == expected
    on_disk = sum(p.stat().st_size for p in filed)
    for direction in ("received", "filed"):
        assert value(samples, "pacsportal_instances_total", direction=direction, app="retrieval", server="LK") == expected
        assert value(samples, "pacsportal_bytes_total", direction=direction, app="retrieval", server="LK") == on_disk
    job_labels = {"app": "retrieval", "job": "retrievaljob"}
    assert value(samples, "pacsportal_jobs", status="partial", **job_labels) == 1
    assert value(samples, "pacsportal_jobs", status="running", **job_labels) == 0
    assert value(samples, "pacsportal_queue_depth", **job_labels) == 0
    assert value(samples, "pacsportal_item_duration_seconds_count", outcome="succeeded", **job_labels) == 2
    assert value(samples, "pacsportal_item_duration_seconds_count", outcome="failed", **job_labels) == 1
    assert value(samples, "pacsportal_item_duration_seconds_bucket", outcome="succeeded", le="+Inf", **job_labels) == 2
    assert value(samples, "pacsportal_receiver_processes") == 1
    assert value(samples, "pacsportal_receiver_association_limit") == 4
    assert value(samples, "pacsportal_data_folder_free_bytes", folder="downloads") > 0

    checked = promtool(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "# TYPE pacsportal_item_duration_seconds histogram" in text


def test_promtool_refuses_a_broken_text():
    """The check has teeth: a counter without its _total and a histogram without +Inf fail."""
    checked = promtool("# HELP x_seconds a\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"1\"} 1\n"
                       "x_seconds_count 1\nx_seconds_sum 1\n# HELP y a\n# TYPE y counter\ny 1\n")
    assert checked.returncode != 0
