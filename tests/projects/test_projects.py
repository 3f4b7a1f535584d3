"""Projects over HTTP, the pseudonym map and its audit, the race for a new patient, the upgrade's grant."""
from __future__ import annotations

import csv
import io
import re
import threading

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.dicom import deidentify as d
from apps.projects.models import Project, Pseudonym

pytestmark = pytest.mark.django_db


def test_a_project_is_made_with_a_secret_of_its_own_that_the_answer_never_shows(api):
    answer = api.post("/api/projects/", {"name": "TRIAL1", "options": ["retain-longitudinal-dates",
                                                                          "clean-descriptors"],
                                         "max_date_shift_days": 60}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["name"] == "TRIAL1" and body["profile"] == "basic" and body["allow_burned_in"] is False
    assert body["options"] == ["retain-longitudinal-dates", "clean-descriptors"]
    assert "secret" not in body
    other = api.post("/api/projects/", {"name": "TRIAL2"}, format="json")
    one, two = Project.objects.get(name="TRIAL1"), Project.objects.get(name="TRIAL2")
    assert re.fullmatch(r"[0-9a-f]{64}", one.secret) and one.secret != two.secret
    assert one.secret not in answer.content.decode() + other.content.decode()
    assert api.get("/api/projects/TRIAL1").json()["max_date_shift_days"] == 60


@pytest.mark.parametrize("body,field,words", [
    ({"name": "TRIAL 1"}, "name", "letters, digits"),
    ({"name": "../x"}, "name", "letters, digits"),
    ({"name": "T", "options": ["retain-everything"]}, "options", "retain-everything"),
    ({"name": "T", "options": "retain-longitudinal-dates"}, "options", "list"),
    ({"name": "T", "profile": "full"}, "profile", "full"),
    ({"name": "T", "max_date_shift_days": 100000}, "max_date_shift_days", "3650"),
])
def test_bad_fields_are_refused_naming_the_field_and_the_rule(api, body, field, words):
    answer = api.post("/api/projects/", body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content
    assert words in str(answer.json()[field])


def test_names_differing_only_in_case_clash(api):
    Project.objects.create(name="Trial1")
    answer = api.post("/api/projects/", {"name": "TRIAL1"}, format="json")
    assert answer.status_code == 400 and "Trial1" in answer.json()["name"][0]


def test_the_map_is_json_or_csv_and_every_look_is_audited(api, user):
    project = Project.objects.create(name="TRIAL1", max_date_shift_days=10)
    first = project.patient("PAT-1")
    project.patient("=HYPERLINK(1)")
    rows = api.get("/api/projects/TRIAL1/pseudonyms").json()
    assert {"PatientID": "PAT-1", "pseudonym": first.pseudonym, "date_shift_days": first.date_shift_days} in rows
    assert len(rows) == 2 and 1 <= abs(first.date_shift_days) <= 10
    answer = api.get("/api/projects/TRIAL1/pseudonyms?output=csv")
    assert answer["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert {r["PatientID"] for r in table} == {"PAT-1", "'=HYPERLINK(1)"}  # a formula stays text
    looks = AuditEvent.objects.filter(action="project.pseudonyms_viewed", actor=user)
    assert [e.details["output"] for e in looks.order_by("pk")] == ["json", "csv"]
    assert all(e.target == f"projects.Project:{project.pk}" for e in looks)
    assert api.get("/api/projects/TRIAL1/pseudonyms?output=xml").status_code == 400


def test_same_patient_same_pseudonym_and_another_project_another(db):
    one, two = Project.objects.create(name="ONE"), Project.objects.create(name="TWO")
    assert one.patient("P1") == one.patient("P1")
    assert one.patient("P1").pseudonym.startswith("ONE-") and two.patient("P1").pseudonym.startswith("TWO-")
    assert one.patient("P1").pseudonym[4:] != two.patient("P1").pseudonym[4:]
    assert one.patient("P1") != one.patient("P2")
    assert Pseudonym.objects.filter(project=one).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_a_new_patient_get_one_pseudonym():
    project = Project.objects.create(name="RACE")
    start = threading.Barrier(6)
    seen, errors = [], []

    def worker():
        from django.db import connection

        try:
            start.wait()
            seen.append(Project.objects.get(pk=project.pk).patient("NEWPATIENT"))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever a worker met
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(seen) == 6 and len(set(seen)) == 1
    assert Pseudonym.objects.filter(project=project, patient_id="NEWPATIENT").count() == 1


def test_a_hash_taken_by_another_patient_gets_the_next_variant(db):
    project = Project.objects.create(name="CLASH")
    taken = d.patient_keys(bytes.fromhex(project.secret), "CLASH", "P9", 30).pseudonym
    Pseudonym.objects.create(project=project, patient_id="SOMEONE", pseudonym=taken, date_shift_days=1)
    got = project.patient("P9")
    assert got.pseudonym != taken and got.pseudonym.startswith("CLASH-")


def test_a_project_with_a_map_cannot_be_deleted_nor_renamed(api):
    project = Project.objects.create(name="KEEP")
    project.patient("P1")
    answer = api.delete("/api/projects/KEEP/")
    assert answer.status_code == 409 and "pseudonym map" in answer.json()["error"]
    answer = api.patch("/api/projects/KEEP/", {"name": "KEPT"}, format="json")
    assert answer.status_code == 400 and "renamed" in answer.json()["name"][0]
    Project.objects.create(name="EMPTY")
    assert api.delete("/api/projects/EMPTY/").status_code == 204


def test_the_recipe_follows_the_project(db):
    project = Project.objects.create(name="R", options=["retain-safe-private"], allow_burned_in=True)
    recipe = project.recipe()
    assert recipe.options == {"retain-safe-private"} and recipe.allow_burned_in
    assert recipe.secret == bytes.fromhex(project.secret)


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_grants_identified_data_to_whoever_could_start_jobs(django_user_model):
    call_command("migrate", "projects", "0001", verbosity=0)
    handle = Permission.objects.filter(codename="handle_identified_data")
    handle.delete()  # as before the upgrade: the permission did not exist

    def perm(app, codename):
        return Permission.objects.get(content_type__app_label=app, codename=codename)
    retrievers = Group.objects.create(name="retrievers")
    retrievers.permissions.add(perm("retrieval", "start_retrieval"))
    viewers = Group.objects.create(name="viewers")
    viewers.permissions.add(perm("retrieval", "view_retrievaljob"))
    sender = django_user_model.objects.create_user("sender")
    sender.user_permissions.add(perm("sending", "add_sendjob"))
    deliverer = django_user_model.objects.create_user("deliverer")
    deliverer.user_permissions.add(perm("delivery", "add_deliveryjob"))
    member = django_user_model.objects.create_user("member")
    member.groups.add(retrievers)
    nobody = django_user_model.objects.create_user("nobody")
    nobody.groups.add(viewers)

    call_command("migrate", verbosity=0)  # every app: the jobs' project fields went back with 0001

    def holds(user):
        return django_user_model.objects.get(pk=user.pk).has_perm("projects.handle_identified_data")
    assert holds(sender) and holds(deliverer) and holds(member)
    assert not holds(nobody)
    assert not viewers.permissions.filter(codename="handle_identified_data").exists()
    later = django_user_model.objects.create_user("later")
    assert not holds(later)
