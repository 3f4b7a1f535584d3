"""Attacks on /metrics from outside, over real HTTP: no credentials, a wrong or guessed token, a token
while none is configured, a logged-in account that is not staff; and patient identifiers planted in every
job field the metrics are built from, which must appear in no label and nowhere in the text."""
import httpx
import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.jobs.models import ItemStatus
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.metrics.conftest import TOKEN, Scraper

pytestmark = pytest.mark.django_db(transaction=True)


def get(live_server, path="/metrics", **headers):
    return httpx.get(f"{live_server.url}{path}", headers=headers)


def test_without_credentials_the_answer_is_401_and_names_the_way_in(live_server, metrics_token):
    response = get(live_server)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "pacsportal_" not in response.text


@pytest.mark.parametrize("header", [f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}{TOKEN}", "Bearer", "bearer x",
                                    f"Bearer {TOKEN} extra", f"Bearer {TOKEN.upper()}"])
def test_a_wrong_token_is_401(live_server, metrics_token, header):
    response = get(live_server, Authorization=header)
    assert response.status_code == 401
    assert "Wrong metrics token" in response.json()["detail"]
    assert "pacsportal_" not in response.text


def test_no_token_opens_metrics_while_none_is_configured(live_server, settings):
    settings.METRICS_TOKEN = ""
    for header in ("Bearer", "Bearer x", "Bearer \"\""):
        assert get(live_server, Authorization=header).status_code == 401


def test_an_account_that_is_not_staff_is_refused_with_a_session_and_with_its_token(
        live_server, metrics_token, django_user_model):
    tech = django_user_model.objects.create_user(username="tech2", password="tech-pass-123")
    session = Client()
    session.force_login(tech)  # the admin's login form admits staff only; a session of any account will do
    with httpx.Client(base_url=live_server.url, cookies={"sessionid": session.cookies["sessionid"].value}) as browser:
        assert browser.get("/metrics").status_code == 403
        tech.is_staff = True
        tech.save()
        assert browser.get("/metrics").status_code == 200
    other = django_user_model.objects.create_user(username="tech3", password="tech-pass-123")
    key = Token.objects.create(user=other).key
    refused = get(live_server, Authorization=f"Token {key}")
    assert refused.status_code == 403
    assert "staff" in refused.json()["detail"]
    other.is_staff = True
    other.save()
    text = get(live_server, Authorization=f"Token {key}")
    assert text.status_code == 200 and "pacsportal_jobs" in text.text
    counters = get(live_server, "/metrics?format=json", Authorization=f"Token {key}")
    assert counters.headers["content-type"] == "application/json"
    assert counters.json()["retrieval.retrievaljob.by_status"]["pending"] == 0


def test_planted_patient_identifiers_appear_in_no_label(live_server, metrics_token, django_user_model):
    planted = {"PatientID": "PAT-4711-SECRET", "name": "MUSTERMANN^ERIKA", "acc": "ACC99887766",
               "uid": "1.2.826.0.1.3680043.99.4711", "path": "LK/20210301_PAT-4711-SECRET_CT"}
    server = DicomServer.objects.create(name="LK", ae_title="LKPACS", host="127.0.0.1", port=104)
    job = RetrievalJob.objects.create(description=f"{planted['name']} {planted['PatientID']}.csv",
                                      started_at=timezone.now(), status="partial", completed_at=timezone.now())
    now = timezone.now()
    for n, status in enumerate([ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.PENDING]):
        RetrievalItem.objects.create(
            job=job, line=n + 2, patient_id=planted["PatientID"], modality="CT", dicom_server=server,
            server_name="LK", study_instance_uid=planted["uid"], accession_number=planted["acc"],
            path=planted["path"], status=status, instances=5, bytes=5000, started_at=now, finished_at=now,
            error=f"No study for {planted['name']} {planted['PatientID']}", flag=planted["name"],
            worker=planted["PatientID"], waiting=f"waiting for {planted['PatientID']}",
            result={"PatientID": planted["PatientID"]})
    text = Scraper(live_server.url, TOKEN).text()
    for word in [*planted.values(), "MUSTERMANN", "4711"]:
        assert word not in text
    allowed = {"LK", "", "retrieval", "sending", "delivery", "photos", "imports", "servers", "retrievaljob",
               "sendjob", "deliveryjob", "photoupload", "importjob", "echojob", "received", "filed", "sent",
               *ItemStatus.values, "partial", "data", "downloads", "staging", "uploads", "quarantine"}
    labels = set()
    for family in Scraper(live_server.url, TOKEN).samples(text):
        labels |= {v for k, v in family[1] if k != "le"}
    assert labels <= allowed, labels - allowed
    assert "LK" in labels


def test_an_address_guessing_the_token_is_locked_out_and_the_right_token_still_served(live_server, metrics_token,
                                                                                     settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 5
    answers = [get(live_server, Authorization=f"Bearer guess-{n}").status_code for n in range(7)]
    assert answers[:4] == [401] * 4 and answers[-2:] == [429, 429], answers
    locked = get(live_server, Authorization="Bearer guess-again")
    assert locked.status_code == 429 and "Too many" in locked.json()["detail"]
    assert get(live_server, Authorization=f"Bearer {TOKEN}").status_code == 200
