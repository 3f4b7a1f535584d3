"""Attacks on the e-mails: patient identifiers planted wherever a job keeps words (the case list's file
name, which becomes the job's description; the rows' PatientIDs; the failing rows' errors) must not reach
a message's subject or body."""
import pytest

from apps.retrieval.models import RetrievalJob
from tests.notify.test_job_mail import day, run_items

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.orthanc]


def test_a_job_carrying_patient_identifiers_mails_none_of_them(smtp, api, owner, server, orthanc_dataset):
    from django.core.files.uploadedfile import SimpleUploadedFile

    s0, s1 = orthanc_dataset["studies"][:2]
    planted_id, planted_name = "PLANTED-4711-ID", "MUSTERMANN^ERIKA"
    lines = ["PatientID,StudyDate,Modality,Server",
             f"{s0['PatientID']},{day(s0)},{s0['Modality']},B",
             f"{s1['PatientID']},{day(s1)},{s1['Modality']},B",
             f"{planted_id},{day(s0)},CT,B",
             f"{planted_name},{day(s0)},CT,B"]
    upload = SimpleUploadedFile(f"{planted_name}_{planted_id}_{s0['AccessionNumber']}.csv",
                                "\n".join(lines).encode(), content_type="text/csv")
    response = api.post("/api/retrievals/", {"file": upload, "notify": "true"}, format="multipart")
    assert response.status_code == 201, response.content
    job = run_items(response.json()["id"])
    assert job.status == "partial"
    assert planted_name in job.description  # the planted words are where a careless message would look
    assert any(job.items.exclude(error="").values_list("error", flat=True))

    [message] = smtp.inbox.wait_for(1)
    text = smtp.inbox.text(message) + "\n" + "\n".join(f"{k}: {v}" for k, v in message.items())
    identifiers = {planted_id, planted_name, "MUSTERMANN", "4711"}
    for study in (s0, s1):
        identifiers |= {study["PatientID"], study["PatientName"], study["AccessionNumber"],
                        study["StudyInstanceUID"], *study["PatientName"].split("^")}
    for item in job.items.all():
        if item.path:
            identifiers.add(item.path)
    found = sorted(i for i in identifiers if i and i in text)
    assert found == [], f"patient identifiers in the e-mail: {found}"
    assert f"retrieval job #{job.pk} ended: partial" in message["Subject"]
    assert RetrievalJob.objects.count() == 1


def test_the_setting_is_the_callers_own_and_the_address_is_not_theirs_to_change(api, owner, django_user_model):
    """Over the API with a real token: a user sets only their own setting, cannot redirect the mail to
    another address, and gets a 400 naming the field for anything else."""
    from apps.notify.models import MailPreference

    other = django_user_model.objects.create_user(username="other", email="other@example.org")
    MailPreference.objects.create(user=other, job_ended=False)
    assert api.get("/api/me/notifications").json() == {"job_ended": False, "email": "tech@example.org"}
    moved = api.put("/api/me/notifications", {"job_ended": True, "email": "thief@example.org"}, format="json")
    assert moved.status_code == 400 and "email" in moved.json()
    assert not MailPreference.wants_job_mail(owner)
    for body, field in (({"job_ended": "yes"}, "job_ended"), ({"job_ended": True, "user": other.pk}, "user"),
                        ({}, "job_ended")):
        refused = api.put("/api/me/notifications", body, format="json")
        assert refused.status_code == 400 and field in refused.json(), refused.content
    assert api.put("/api/me/notifications", ["job_ended"], format="json").status_code == 400
    done = api.put("/api/me/notifications", {"job_ended": True}, format="json")
    assert done.json() == {"job_ended": True, "email": "tech@example.org"}
    assert MailPreference.wants_job_mail(owner) and not MailPreference.wants_job_mail(other)


def test_no_address_no_setting(api, user):
    refused = api.put("/api/me/notifications", {"job_ended": True}, format="json")
    assert refused.status_code == 400 and "no e-mail address" in refused.json()["job_ended"][0]
