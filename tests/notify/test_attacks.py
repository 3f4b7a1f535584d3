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
