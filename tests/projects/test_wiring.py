"""A `project` on every job intake, over real HTTP (the portal under live_server) with two accounts: a
researcher, who may start retrievals, sends and deliveries but not handle identified data, and a
clinician, who may. Without a project the researcher gets a 403 naming the rule and nothing starts; an
unknown project is a 400 naming it; the admin's forms offer the researcher only projects."""
from __future__ import annotations

import httpx
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.projects.models import Project
from apps.retrieval.models import RetrievalJob
from apps.sending.models import Inbox, SendJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db(transaction=True)
RULE = "projects.handle_identified_data"


class Account:
    def __init__(self, user, url):
        self.user = user
        self.http = httpx.Client(base_url=url, timeout=30,
                                 headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})

    def post(self, path, **kwargs):
        return self.http.post(path, **kwargs)


def make_account(django_user_model, url, name, *, identified: bool, staff: bool = False) -> Account:
    user = django_user_model.objects.create_user(name, password="pw-123-456-789", is_staff=staff)
    granted = Permission.objects.exclude(content_type__app_label="jobs", codename="view_all_jobs")
    if not identified:
        granted = granted.exclude(content_type__app_label="projects", codename="handle_identified_data")
    user.user_permissions.set(granted)
    return Account(user, url)


@pytest.fixture
def world(settings, tmp_path, live_server, django_user_model):
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    settings.DATA_DIR = tmp_path / "data"
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "a.dcm").write_bytes(b"not even DICOM")
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    DeliveryTarget.objects.create(name="DROP", kind="folder", path=str(tmp_path / "drop"))
    Project.objects.create(name="TRIAL1")

    class World:
        root = tmp_path
        researcher = make_account(django_user_model, live_server.url, "researcher", identified=False, staff=True)
        clinician = make_account(django_user_model, live_server.url, "clinician", identified=True, staff=True)
    return World


ROWS = {"rows": [{"PatientID": "P1", "StudyDate": "2024-01-02", "Modality": "CT", "Server": "LK"}]}


def refused_for_the_rule(answer) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert RULE in answer.text and "project" in answer.text


def test_a_retrieval_without_a_project_needs_the_permission(world):
    refused_for_the_rule(world.researcher.post("/api/retrievals/", json=ROWS))
    assert not RetrievalJob.objects.exists()
    mine = world.researcher.post("/api/retrievals/", json={**ROWS, "project": "TRIAL1"})
    assert mine.status_code == 201, mine.text
    assert mine.json()["project"] == "TRIAL1"
    assert RetrievalJob.objects.get(pk=mine.json()["id"]).project.name == "TRIAL1"
    theirs = world.clinician.post("/api/retrievals/", json=ROWS)
    assert theirs.status_code == 201 and theirs.json()["project"] is None


def test_a_case_list_upload_takes_the_project_as_a_multipart_field(world):
    csv = b"PatientID,StudyDate,Modality,Server\nP1,2024-01-02,CT,LK\n"
    refused_for_the_rule(world.researcher.post("/api/retrievals/", files={"file": ("c.csv", csv)}))
    answer = world.researcher.post("/api/retrievals/", files={"file": ("c.csv", csv)}, data={"project": "TRIAL1"})
    assert answer.status_code == 201, answer.text
    assert RetrievalJob.objects.get(pk=answer.json()["id"]).project.name == "TRIAL1"


def test_an_unknown_project_is_a_400_naming_it_on_every_intake(world):
    for path, body in [("/api/retrievals/", {**ROWS, "project": "NOPE7"}),
                       ("/api/sends/", {"servers": ["LK"], "path": str(world.root / "cases"), "project": "NOPE7"})]:
        for who in (world.researcher, world.clinician):
            answer = who.post(path, json=body)
            assert answer.status_code == 400, (path, answer.text)
            assert "NOPE7" in answer.json()["project"][0]
    answer = world.clinician.post("/api/retrievals/", json={**ROWS, "delivery": {"target": "DROP", "project": "NOPE7"}})
    assert answer.status_code == 400 and "NOPE7" in answer.text
    assert not RetrievalJob.objects.exists() and not SendJob.objects.exists()


def test_a_send_without_a_project_needs_the_permission(world):
    body = {"servers": ["LK"], "path": str(world.root / "cases")}
    refused_for_the_rule(world.researcher.post("/api/sends/", json=body))
    refused_for_the_rule(world.researcher.post("/api/sends/", data={"servers": "LK"},
                                               files={"files": ("x.dcm", b"DICM")}))
    assert not SendJob.objects.exists()
    mine = world.researcher.post("/api/sends/", json={**body, "project": "TRIAL1"})
    assert mine.status_code == 201, mine.text
    assert mine.json()["project"] == "TRIAL1" and str(world.root) not in mine.text  # the path may name a patient
    upload = world.researcher.post("/api/sends/", data={"servers": "LK", "project": "TRIAL1"},
                                   files={"files": ("x.dcm", b"DICM")})
    assert upload.status_code == 201 and SendJob.objects.get(pk=upload.json()["id"]).project.name == "TRIAL1"
    assert world.clinician.post("/api/sends/", json=body).status_code == 201


def test_a_delivery_of_identified_files_needs_a_project_or_the_permission(world):
    identified = RetrievalJob.objects.create(created_by=world.researcher.user, status="succeeded")
    refused_for_the_rule(world.researcher.post("/api/deliveries/", json={"retrieval": identified.pk,
                                                                         "target": "DROP"}))
    assert not DeliveryJob.objects.exists()
    answer = world.researcher.post("/api/deliveries/", json={"retrieval": identified.pk, "target": "DROP",
                                                             "project": "TRIAL1"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["project"] == "TRIAL1"
    # a project's retrieval filed de-identified files: delivering them needs no second project
    filed = RetrievalJob.objects.create(created_by=world.researcher.user, status="succeeded",
                                        project=Project.objects.get(name="TRIAL1"))
    answer = world.researcher.post("/api/deliveries/", json={"retrieval": filed.pk, "target": "DROP"})
    assert answer.status_code == 201, answer.text


def test_a_retrievals_delivery_takes_a_project(world):
    answer = world.clinician.post("/api/retrievals/", json={**ROWS, "delivery": {"target": "DROP",
                                                                                 "project": "TRIAL1"}})
    assert answer.status_code == 201, answer.text
    delivery = DeliveryJob.objects.get(retrieval_id=answer.json()["id"])
    assert delivery.project.name == "TRIAL1"
    # the researcher's delivery does not stand in for the retrieval's project
    refused_for_the_rule(world.researcher.post("/api/retrievals/", json={**ROWS, "delivery": {
        "target": "DROP", "project": "TRIAL1"}}))


def inbox_body(root, name, **extra):
    for sub in ("in", "archive"):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
    return {"name": name, "path": str(root / name / "in"), "archive_path": str(root / name / "archive"),
            "destinations": ["LK"], **extra}


def test_an_inbox_without_a_project_needs_the_permission(world):
    refused_for_the_rule(world.researcher.post("/api/inboxes/", json=inbox_body(world.root, "BOXA")))
    assert not Inbox.objects.exists()
    answer = world.researcher.post("/api/inboxes/", json=inbox_body(world.root, "BOXA", project="TRIAL1"))
    assert answer.status_code == 201, answer.text
    assert answer.json()["project"] == "TRIAL1" and Inbox.objects.get(name="BOXA").project.name == "TRIAL1"
    # taking the project off again is the same rule
    refused_for_the_rule(world.researcher.http.patch("/api/inboxes/BOXA/", json={"project": None}))
    assert Inbox.objects.get(name="BOXA").project is not None
    unknown = world.researcher.post("/api/inboxes/", json=inbox_body(world.root, "BOXB", project="NOPE7"))
    assert unknown.status_code == 400 and "NOPE7" in unknown.text
    assert world.clinician.post("/api/inboxes/", json=inbox_body(world.root, "BOXC")).status_code == 201


def test_the_admin_forms_offer_the_researcher_only_projects(world, client):
    from apps.retrieval.forms import CaseListUploadForm, SingleQueryForm
    from apps.sending.forms import SendForm

    for form in (CaseListUploadForm, SingleQueryForm, SendForm):
        theirs = form(user=world.researcher.user).fields["project"]
        assert theirs.required and [label for _, label in theirs.choices] == ["TRIAL1"], form
        mine = form(user=world.clinician.user).fields["project"]
        assert not mine.required and len(list(mine.choices)) == 2, form
    client.force_login(world.researcher.user)
    page = client.post("/admin/sending/sendjob/send/", {"servers": ["LK"], "path": str(world.root / "cases"),
                                                        "method": "c-store"})
    assert page.status_code == 200 and not SendJob.objects.exists()
    assert "This field is required" in page.content.decode()
    page = client.post("/admin/sending/sendjob/send/", {"servers": ["LK"], "path": str(world.root / "cases"),
                                                        "method": "c-store", "project": "TRIAL1"})
    assert page.status_code == 302 and SendJob.objects.get().project.name == "TRIAL1"

