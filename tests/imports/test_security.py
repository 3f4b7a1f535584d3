"""Attacks first: sources outside IMPORT_ROOTS (directly, by `..`, by a symlink), links inside a tree that
lead out, other users' jobs, and the JPEGs without a login."""
import os

import pytest
from rest_framework.test import APIClient

from apps.imports.intake import create_import
from apps.imports.models import ImportJob
from tests.imports.conftest import run_job
from tests.imports.tree import ct, write

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "secret"
    write(ct("S001", "Secret^Patient"), folder / "s.dcm")
    return folder


def refused(api, source_path) -> str:
    response = api.post("/api/imports/", {"source_path": source_path}, format="json")
    assert response.status_code == 400, response.content
    return response.json()["error"]


def test_a_source_outside_the_roots_is_refused_naming_the_setting(api, import_root, outside):
    assert "IMPORT_ROOTS" in refused(api, str(outside))
    assert "IMPORT_ROOTS" in refused(api, f"{import_root}/../secret")  # `..` escapes the root
    (import_root / "link").symlink_to(outside)
    message = refused(api, str(import_root / "link"))  # a symlink escapes the root
    assert "IMPORT_ROOTS" in message and str(outside) in message
    assert "IMPORT_ROOTS" in refused(api, "dicom/relative")
    assert "no such folder" in refused(api, str(import_root / "missing"))
    assert ImportJob.objects.count() == 0


def test_no_roots_configured_refuses_everything(api, settings, outside):
    settings.IMPORT_ROOTS = []
    assert "IMPORT_ROOTS setting is empty" in refused(api, str(outside))


def test_links_inside_the_tree_that_lead_out_are_not_read(import_root, outside):
    source = import_root / "tree"
    write(ct("P1", "A^B"), source / "ok.dcm")
    (source / "out.dcm").symlink_to(outside / "s.dcm")
    (source / "outdir").symlink_to(outside)
    (source / "in.dcm").symlink_to(source / "ok.dcm")  # inside the roots: used (and a duplicate)
    job = run_job(create_import(str(source)))
    errors = {e["file"]: e["reason"] for e in job.errors()}
    assert errors == {"out.dcm": "a symbolic link that leads outside IMPORT_ROOTS: not read",
                      "outdir": "a symbolic link to a folder: not followed"}
    counts = job.counts()
    assert (counts["total_files_scanned"], counts["new_images_uploaded"], counts["duplicate_images_skipped"]) == (2, 1, 1)
    assert not job.images.filter(patient__patient_id="S001").exists()
    assert job.status == "partial"


def test_a_root_that_moved_out_after_the_job_was_made_is_not_scanned(import_root, settings, outside):
    job = create_import(str(import_root))
    settings.IMPORT_ROOTS = [outside.resolve()]
    job = run_job(job)
    assert job.status == "failed"
    assert "no longer inside IMPORT_ROOTS" in job.items.get(kind="scan").error


def test_other_users_jobs_are_404_and_anonymous_is_refused(api, tree, django_user_model):
    source, _ = tree
    other = django_user_model.objects.create_user(username="other", password="other-pass-123")
    theirs = create_import(str(source), user=other)
    assert api.get(f"/api/imports/{theirs.task_id}/status").status_code == 404
    assert api.get(f"/api/imports/{theirs.task_id}/stats").status_code == 404
    assert api.post(f"/api/imports/{theirs.task_id}/cancel/").status_code == 404
    assert api.get("/api/imports/").json() == []
    anonymous = APIClient()
    for url in ("/api/imports/", f"/api/imports/{theirs.task_id}/status", "/api/patients/", "/api/images/"):
        assert anonymous.get(url).status_code in (401, 403), url
    assert anonymous.post("/api/imports/", {"source_path": str(source)}, format="json").status_code in (401, 403)


def test_the_jpeg_needs_a_login(api, tree):
    source, _ = tree
    run_job(create_import(str(source)))
    image = api.get("/api/images/").json()[0]
    assert api.get(image["jpg_url"]).status_code == 200
    assert APIClient().get(image["jpg_url"]).status_code in (401, 403)


def test_patient_names_stay_out_of_logs_above_debug(tree, caplog):
    source, _ = tree
    caplog.set_level("INFO")
    run_job(create_import(str(source)))
    text = caplog.text
    assert text  # the job did log
    for secret in ("Doe^P0", "P000", "Mono^One", "Other^Name"):
        assert secret not in text
    assert os.path.isdir(source)
