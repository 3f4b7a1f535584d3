"""A long case list end to end in a real django-q2 cluster against the real Orthanc: the upload answers
at once with a preparing job, the workers create and run its rows, every counter is exact, the report
is complete, and a one-row job of another user started behind it is not kept waiting for the long one."""
import io
import time

import pytest

from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import build_report
from apps.servers.models import DicomServer
from tests.jobs.cluster import QCluster, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = 3000  # enough that the long job still has rows waiting when the one-row job is done, batches and all


def upload(text: str, name: str) -> io.BytesIO:
    f = io.BytesIO(text.encode())
    f.name = name
    return f


def test_a_long_list_runs_in_the_cluster_and_a_small_job_is_not_starved(api, user, orthanc, orthanc_dataset,
                                                                         settings, tmp_path, django_user_model):
    settings.RETRIEVAL_INLINE_ROWS = 50
    peer = orthanc.peer()
    DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                               retrieve_method="c-get", retries=0, max_associations=2)
    study = orthanc_dataset["studies"][0]
    day = f"{study['StudyDate'][:4]}-{study['StudyDate'][4:6]}-{study['StudyDate'][6:]}"
    text = ("PatientID,StudyDate,Modality,Server\n" + f"{study['PatientID']},{day},{study['Modality']},ORTH\n"
            + "".join(f"NOMATCH{n:05d},2024-01-02,CT,ORTH\n" for n in range(ROWS - 1)) + "ORT*,2024-01-02,CT,ORTH\n")
    downloads = tmp_path / "downloads"
    cluster = QCluster(tmp_path / "cluster.log", Q_WORKERS=2, DOWNLOADS_DIR=downloads,
                       STAGING_DIR=tmp_path / "staging", JOB_SLICE_SECONDS=0.5)
    try:
        started = time.monotonic()
        response = api.post("/api/retrievals/", {"file": upload(text, "long.csv")}, format="multipart")
        assert response.status_code == 201 and response.json()["status"] == "preparing"
        assert time.monotonic() - started < 5
        long_job = RetrievalJob.objects.get(pk=response.json()["id"])
        wait_for(lambda: long_job.items.filter(status="failed").count() >= 20, 60, "the long job to be under way")

        other = django_user_model.objects.create_user("other", password="other-pass-123")
        other.user_permissions.set(user.user_permissions.all())
        api.force_authenticate(other)
        small = api.post("/api/retrievals/", {"rows": [{"PatientID": study["PatientID"], "StudyDate": day,
                                                        "Modality": study["Modality"], "Server": "ORTH"}]},
                         format="json").json()
        wait_for(lambda: RetrievalJob.objects.get(pk=small["id"]).status not in ("pending", "running"), 60,
                 "the one-row job")
        long_left = long_job.items.filter(status="pending").count()
        assert long_left > 0, "the one-row job finished while the long one still had rows waiting"
        wait_for(lambda: RetrievalJob.objects.get(pk=long_job.pk).status not in ("pending", "running"), 120,
                 "the long job")
    finally:
        cluster.stop()
    assert RetrievalJob.objects.get(pk=small["id"]).status == "succeeded"
    job = RetrievalJob.objects.get(pk=long_job.pk)
    progress = job.progress()
    assert job.status == "partial" and not job.preparing, cluster.output()[-3000:]
    assert (progress["total"], progress["succeeded"], progress["failed"], progress["bad_rows"]) == (ROWS, 1, ROWS - 1, 1)
    assert set(job.items.values_list("attempts", flat=True)) == {1}
    report = build_report(job)
    assert report["summary"]["rows"] == ROWS + 1 and len(report["failed"]) == ROWS - 1
    assert report["bad_rows"][0]["text"] == "ORT*,2024-01-02,CT,ORTH"
    assert len(list((downloads / "ORTH").rglob("*.dcm"))) == 5, "the one real study's 5 instances, once"
