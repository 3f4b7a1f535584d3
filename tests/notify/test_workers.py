"""Job-end e-mail from the real worker cluster (`manage.py qcluster`, configured by EMAIL_URL as in
production) to a real SMTP server: the retrieval runs on the workers, the one message comes from them."""
import pytest

from apps.retrieval.models import RetrievalJob
from tests.jobs.cluster import QCluster
from tests.notify.test_job_mail import day, post_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]


def test_a_job_run_by_the_workers_mails_its_owner_once(smtp, api, owner, server, orthanc, orthanc_dataset,
                                                      tmp_path, settings, broker):
    s0, s1 = orthanc_dataset["studies"][:2]
    rows = [{"PatientID": s["PatientID"], "StudyDate": day(s), "Modality": s["Modality"], "Server": "B"}
            for s in (s0, s1)]
    cluster = QCluster(tmp_path / "cluster.log", EMAIL_URL=smtp.url, Q_WORKERS=2,
                       DOWNLOADS_DIR=settings.DOWNLOADS_DIR, STAGING_DIR=settings.STAGING_DIR)
    try:
        job_id = post_rows(api, rows, notify=True)["id"]
        [message] = smtp.inbox.wait_for(1, timeout=120)
    finally:
        cluster.stop()
    job = RetrievalJob.objects.get(pk=job_id)
    assert job.status == "succeeded", cluster.output()[-3000:]
    expected = sum(len(orthanc.study_instances(s["StudyInstanceUID"])) for s in (s0, s1))
    text = smtp.inbox.text(message)
    assert message["Subject"] == f"[PACS Portal] retrieval job #{job.pk} ended: succeeded"
    assert "  succeeded: 2\n" in text and f"  instances: {expected}\n" in text
    assert {i.worker for i in job.items.all()} and all(i.worker for i in job.items.all())  # run by the cluster
    assert len(smtp.inbox.messages) == 1
