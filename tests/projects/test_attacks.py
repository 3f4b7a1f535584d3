"""Attacks on projects from outside: accounts without the permission, another account with only part of
it, a hunt for the secret, the map, through the API, the admin, the change log, the audit log and logs."""
from __future__ import annotations

import logging

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.projects.models import Project
from tests.projects.planted import retrieval_layout

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def account(django_user_model, name, *codenames, staff=False):
    user = django_user_model.objects.create_user(name, password="pw-123-456", is_staff=staff)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="projects", codename__in=codenames))
    return user


@pytest.fixture
def project():
    project = Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"])
    project.patient("SECRET-PATIENT-77")
    return project


def test_an_account_without_permissions_sees_no_project_and_changes_none(django_user_model, project):
    stranger = client_for(account(django_user_model, "stranger"))
    for method, url, body in [("get", "/api/projects/", None), ("get", "/api/projects/TRIAL1/", None),
                              ("get", "/api/projects/TRIAL1/pseudonyms", None),
                              ("post", "/api/projects/", {"name": "MINE"}),
                              ("patch", "/api/projects/TRIAL1/", {"allow_burned_in": True}),
                              ("delete", "/api/projects/TRIAL1/", None)]:
        answer = getattr(stranger, method)(url, body, format="json") if body else getattr(stranger, method)(url)
        assert answer.status_code == 403, (method, url, answer.status_code)
        assert answer["Content-Type"].startswith("application/json")
        assert b"SECRET-PATIENT-77" not in answer.content
    project.refresh_from_db()
    assert project.allow_burned_in is False and not Project.objects.filter(name="MINE").exists()


def test_viewing_projects_does_not_open_the_map(django_user_model, project):
    viewer = client_for(account(django_user_model, "viewer", "view_project", "change_project"))
    answer = viewer.get("/api/projects/TRIAL1/pseudonyms")
    assert answer.status_code == 403
    assert viewer.get("/api/projects/TRIAL1/pseudonyms?output=csv").status_code == 403
    body = viewer.get("/api/projects/TRIAL1/").content + viewer.get("/api/projects/").content
    assert b"SECRET-PATIENT-77" not in body and project.patient("SECRET-PATIENT-77").pseudonym.encode() not in body
    assert not AuditEvent.objects.filter(action="project.pseudonyms_viewed").exists()


def test_the_map_permission_alone_is_not_enough_either(django_user_model, project):
    only_map = client_for(account(django_user_model, "onlymap", "view_pseudonym_map"))
    assert only_map.get("/api/projects/TRIAL1/pseudonyms").status_code == 403


def test_an_unknown_project_is_a_json_404(django_user_model, project):
    holder = client_for(account(django_user_model, "holder", "view_project", "view_pseudonym_map"))
    answer = holder.get("/api/projects/NOPE/pseudonyms")
    assert answer.status_code == 404 and answer["Content-Type"].startswith("application/json")


def test_the_secret_cannot_be_set_or_read_through_the_api(django_user_model, project):
    editor = client_for(account(django_user_model, "editor", "view_project", "change_project", "add_project"))
    secret = project.secret
    answer = editor.patch("/api/projects/TRIAL1/", {"secret": "00" * 32, "description": "x"}, format="json")
    assert answer.status_code == 200 and "secret" not in answer.json()
    made = editor.post("/api/projects/", {"name": "T2", "secret": "11" * 32}, format="json")
    assert made.status_code == 201
    project.refresh_from_db()
    assert project.secret == secret and Project.objects.get(name="T2").secret != "11" * 32
    schemas = editor.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert "name" in schemas["Project"]["properties"] and "secret" not in schemas["Project"]["properties"]


def test_the_secret_is_nowhere_a_person_can_look(django_user_model, client, project, caplog):
    caplog.set_level(logging.DEBUG)
    boss = django_user_model.objects.create_superuser("boss", password="boss-pass-123", email="")
    client.force_login(boss)
    pages = [client.get("/admin/projects/project/"), client.get(f"/admin/projects/project/{project.pk}/change/"),
             client.get(f"/admin/projects/project/{project.pk}/pseudonyms/"),
             client.get(f"/admin/projects/project/{project.pk}/history/"), client.get("/admin/projects/project/add/")]
    assert all(p.status_code == 200 for p in pages)
    client.post(f"/admin/projects/project/{project.pk}/change/",
                {"name": "TRIAL1", "description": "edited", "profile": "basic", "options": '["clean-descriptors"]',
                 "max_date_shift_days": 5})
    project.refresh_from_db()
    assert project.description == "edited"  # the change went through the admin
    api = client_for(boss)
    pages += [api.get("/api/projects/"), api.get("/api/projects/TRIAL1/"), api.get("/api/projects/TRIAL1/pseudonyms"),
              api.get("/api/projects/TRIAL1/pseudonyms?output=csv")]
    seen = b"".join(p.content for p in pages).decode()
    seen += "".join(str(e.changes) + str(e.additional_data) for e in LogEntry.objects.all())
    seen += "".join(str(e.details) for e in AuditEvent.objects.all())
    seen += caplog.text
    assert project.secret not in seen and project.secret[:16] not in seen
    assert LogEntry.objects.filter(object_repr="TRIAL1").exists()  # changes are logged, without the secret
    # the map was looked at three times (admin page, JSON, CSV): three audit events
    assert AuditEvent.objects.filter(action="project.pseudonyms_viewed", actor=boss).count() == 3
    assert "SECRET-PATIENT-77" not in caplog.text  # no original PatientID in the logs either


def test_the_admin_map_page_needs_the_map_permission(django_user_model, client, project):
    staff = account(django_user_model, "staffer", "view_project", "change_project", staff=True)
    client.force_login(staff)
    assert client.get(f"/admin/projects/project/{project.pk}/change/").status_code == 200
    page = client.get(f"/admin/projects/project/{project.pk}/pseudonyms/")
    assert page.status_code == 403 and b"SECRET-PATIENT-77" not in page.content
    assert client.get(f"/admin/projects/project/{project.pk}/pseudonyms/?output=csv").status_code == 403
    change = client.get(f"/admin/projects/project/{project.pk}/change/").content
    assert b"SECRET-PATIENT-77" not in change and project.secret.encode() not in change
    assert not AuditEvent.objects.filter(action="project.pseudonyms_viewed").exists()
    # the map itself is no model in the admin
    assert client.get("/admin/projects/pseudonym/").status_code == 404


def hostile_files() -> dict[str, bytes]:
    from tests.projects import planted

    good = planted.as_file(planted.planted_dataset())
    start = good.index(b"\x08\x00\x05\x00")  # the data set's first element, after the file meta
    sequence, item = b"\x08\x00\x15\x11SQ\0\0\xff\xff\xff\xff", b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    item_end, sequence_end = b"\xfe\xff\x0d\xe0\0\0\0\0", b"\xfe\xff\xdd\xe0\0\0\0\0"
    return {
        "cut in half": good[: len(good) // 2],
        "cut in the file meta": good[:140],
        "a length past the end": good[:start] + b"\x08\x00\x16\x00UI\xff\x00" + b"1.2",
        "an item never closed": good[:start] + sequence + item + b"\x08\x00\x16\x00UI\x04\x001.2\0",
        "sequences 5,000 deep": good[:start] + (sequence + item) * 5000 + (item_end + sequence_end) * 5000,
        "not DICOM at all": b"%PDF-1.4 " * 100,
    }


@pytest.mark.parametrize("name", list(hostile_files()))
def test_a_hostile_file_fails_with_a_reason_and_leaves_nothing(name, tmp_path):
    from apps.dicom.deidentify import CannotDeidentify

    project = Project.objects.create(name="HOSTILE")
    with pytest.raises(CannotDeidentify, match="unreadable"):
        project.pseudonymizer().write(hostile_files()[name], retrieval_layout(tmp_path, "LK"))
    assert list(tmp_path.rglob("*.dcm")) == [] and list(tmp_path.rglob("*.part")) == []


@pytest.fixture
def researcher(django_user_model, settings, tmp_path):
    """May start retrievals, sends and deliveries, but not handle identified data."""
    from apps.servers.models import DicomServer

    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    settings.DATA_DIR = tmp_path / "data"
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    user = django_user_model.objects.create_user("researcher", password="pw-123-456")
    user.user_permissions.set(Permission.objects.exclude(codename__in=["handle_identified_data", "view_all_jobs"]))
    return user


ROWS = [{"PatientID": "P1", "StudyDate": "2024-01-02", "Modality": "CT", "Server": "LK"}]


@pytest.mark.parametrize("given", ["", None, "   ", "trial1", "TRIAL1\n\x00", ["TRIAL1"], {"name": "TRIAL1"}, 1,
                                   "TRIAL1' OR '1'='1"])
def test_no_project_look_alike_lets_identified_data_through(researcher, project, given):
    from apps.retrieval.models import RetrievalJob
    from apps.sending.models import SendJob

    api = client_for(researcher)
    for path, body in [("/api/retrievals/", {"rows": ROWS, "project": given}),
                       ("/api/sends/", {"servers": ["LK"], "path": str(settings_root()), "project": given})]:
        answer = api.post(path, body, format="json")
        assert answer.status_code in (400, 403), (path, given, answer.status_code, answer.content)
        assert answer["Content-Type"].startswith("application/json")
        assert b"handle_identified_data" in answer.content or b"project" in answer.content
    assert not RetrievalJob.objects.exists() and not SendJob.objects.exists()


def settings_root():
    from django.conf import settings

    return settings.IMPORT_ROOTS[0]


def test_another_accounts_retrieval_cannot_be_delivered_under_a_project(researcher, project, django_user_model):
    from apps.delivery.models import DeliveryJob, DeliveryTarget
    from apps.retrieval.models import RetrievalJob

    other = django_user_model.objects.create_user("clinician", password="pw-123-456")
    theirs = RetrievalJob.objects.create(created_by=other, status="succeeded")
    DeliveryTarget.objects.create(name="DROP", kind="folder", path=str(settings_root() / "drop"))
    answer = client_for(researcher).post("/api/deliveries/", {"retrieval": theirs.pk, "target": "DROP",
                                                              "project": "TRIAL1"}, format="json")
    assert answer.status_code == 400 and f"#{theirs.pk}".encode() in answer.content
    assert not DeliveryJob.objects.exists()


def test_a_jobs_project_cannot_be_changed_or_removed_through_the_api(researcher, project):
    from apps.retrieval.models import RetrievalJob

    api = client_for(researcher)
    job_id = api.post("/api/retrievals/", {"rows": ROWS, "project": "TRIAL1"}, format="json").json()["id"]
    for method in ("patch", "put"):
        answer = getattr(api, method)(f"/api/retrievals/{job_id}/", {"project": None}, format="json")
        assert answer.status_code in (403, 405)
    assert RetrievalJob.objects.get(pk=job_id).project == project


def test_a_project_named_by_jobs_cannot_be_deleted(researcher, project, admin_client_logged_in):
    api = client_for(researcher)
    assert api.post("/api/retrievals/", {"rows": ROWS, "project": "TRIAL1"}, format="json").status_code == 201
    boss = client_for(admin_client_logged_in.user)
    answer = boss.delete("/api/projects/TRIAL1/")
    assert answer.status_code == 409 and b"jobs that name it" in answer.content
    assert Project.objects.filter(name="TRIAL1").exists()


def test_hostile_names_in_a_projects_send_never_reach_its_report(researcher, project, free_port):
    """A FIFO, a link out of the roots, a truncated file and a text file, each named after the patient: the
    walk and the checks skip them, and the job's body, report and log name none of them."""
    import os

    from apps.jobs import runner
    from apps.jobs.models import ItemStatus
    from apps.sending.models import SendJob
    from apps.servers.models import DicomServer
    from tests.projects.planted import PATIENT_ID, as_file, planted_dataset

    DicomServer.objects.filter(name="LK").update(port=free_port)  # nothing listens: the store fails too
    case = settings_root() / f"Smith_{PATIENT_ID}"
    case.mkdir()
    os.mkfifo(case / f"{PATIENT_ID}_fifo.dcm")
    os.symlink("/etc/hostname", case / f"{PATIENT_ID}_link.dcm")
    (case / f"{PATIENT_ID}_cut.dcm").write_bytes(as_file(planted_dataset())[:400])
    (case / f"{PATIENT_ID}.txt").write_text(PATIENT_ID)
    (case / "one.dcm").write_bytes(as_file(planted_dataset()))
    api = client_for(researcher)
    answer = api.post("/api/sends/", {"servers": ["LK"], "path": str(case), "project": "TRIAL1"}, format="json")
    assert answer.status_code == 201, answer.content
    job = SendJob.objects.get(pk=answer.json()["id"])
    for item in job.items.filter(status=ItemStatus.PENDING):
        runner.run_item(item._meta.label, item.pk)
    shown = (api.get(f"/api/sends/{job.pk}/").content + api.get(f"/api/sends/{job.pk}/report").content
             + api.get(f"/api/sends/{job.pk}/report?output=csv").content)
    assert b"Smith" not in shown and PATIENT_ID.encode() not in shown
    report = api.get(f"/api/sends/{job.pk}/report").json()["files"]
    reasons = " ".join(row["reason"] for row in report)
    assert len([r for r in report if r["outcome"] == "skipped"]) == 4, report
    assert "truncated" in reasons and "not a DICOM file" in reasons
    assert "LK" in api.get(f"/api/sends/{job.pk}/").json()["error"]  # the store's failure names the server


def test_a_projects_retrieval_cannot_be_delivered_for_another_project(researcher, project):
    from apps.delivery.models import DeliveryJob, DeliveryTarget
    from apps.retrieval.models import RetrievalJob

    filed = RetrievalJob.objects.create(created_by=researcher, status="succeeded", project=project)
    Project.objects.create(name="TRIAL2")
    DeliveryTarget.objects.create(name="DROP", kind="folder", path=str(settings_root() / "drop"))
    api = client_for(researcher)
    answer = api.post("/api/deliveries/", {"retrieval": filed.pk, "target": "DROP", "project": "TRIAL2"},
                      format="json")
    assert answer.status_code == 400 and b"TRIAL1" in answer.content and b"TRIAL2" in answer.content
    same = api.post("/api/deliveries/", {"retrieval": filed.pk, "target": "DROP", "project": "TRIAL1"},
                    format="json")
    assert same.status_code == 201 and DeliveryJob.objects.count() == 1
