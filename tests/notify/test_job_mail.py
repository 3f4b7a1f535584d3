"""Job-end e-mail through a real SMTP server, for a real retrieval against Orthanc: one message per job
end, to its owner, when asked (per job or per user), with the job's counts and a link."""
import pytest
from django.conf import settings

from apps.jobs import runner
from apps.notify.models import MailPreference
from apps.retrieval.models import RetrievalJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]


def day(study) -> str:
    d = study["StudyDate"]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def run_items(job_id: int) -> RetrievalJob:
    job = RetrievalJob.objects.get(pk=job_id)
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()
    return job


def post_rows(api, rows, **extra):
    response = api.post("/api/retrievals/", {"rows": rows, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_retrieval_asked_to_notify_mails_its_owner_once_with_counts_and_link(
        smtp, api, owner, server, orthanc, orthanc_dataset):
    s0, s1 = orthanc_dataset["studies"][:2]
    rows = [{"PatientID": s["PatientID"], "StudyDate": day(s), "Modality": s["Modality"], "Server": "B"}
            for s in (s0, s1)]
    rows.append({"PatientID": s0["PatientID"], "StudyDate": "1999-01-01", "Modality": "CT", "Server": "B"})
    body = post_rows(api, rows, notify=True)
    assert body["notify"] is True
    job = run_items(body["id"])
    assert job.status == "partial"
    job.refresh_status()  # another worker deriving the same end: no second message
    RetrievalJob.objects.get(pk=job.pk).refresh_status()

    [message] = smtp.inbox.wait_for(1)
    text = smtp.inbox.text(message)
    assert message["X-Envelope-To"] == "tech@example.org"
    assert message["Subject"] == f"[PACS Portal] retrieval job #{job.pk} ended: partial"
    expected = sum(len(orthanc.study_instances(s["StudyInstanceUID"])) for s in (s0, s1))
    progress = job.progress()
    assert progress["instances"] == expected
    assert "  total: 3\n" in text and "  succeeded: 2\n" in text and "  failed: 1\n" in text
    assert f"  instances: {expected}\n" in text
    assert f"Details: {settings.PORTAL_URL}/admin/retrieval/retrievaljob/{job.pk}/change/" in text
    assert len(smtp.inbox.messages) == 1


def test_the_user_setting_asks_for_every_job_and_nobody_else_is_mailed(smtp, api, owner, server, orthanc_dataset):
    s0 = orthanc_dataset["studies"][0]
    row = {"PatientID": s0["PatientID"], "StudyDate": "1999-01-01", "Modality": "CT", "Server": "B"}
    quiet = run_items(post_rows(api, [row])["id"])  # neither the flag nor the setting: no message
    assert quiet.status == "failed" and quiet.notify is False
    MailPreference.objects.create(user=owner, job_ended=True)
    mailed = run_items(post_rows(api, [row])["id"])
    [message] = smtp.inbox.wait_for(1)
    assert message["Subject"] == f"[PACS Portal] retrieval job #{mailed.pk} ended: failed"
    assert len(smtp.inbox.messages) == 1


def test_notify_must_be_a_boolean(api, owner, server):
    row = {"PatientID": "X", "StudyDate": "2021-03-01", "Modality": "CT", "Server": "B"}
    response = api.post("/api/retrievals/", {"rows": [row], "notify": "maybe"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"notify": ["Must be true or false."]}
    assert not RetrievalJob.objects.exists()
