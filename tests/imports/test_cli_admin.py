"""`manage.py import_dicom` with its progress bar, the admin's start page, job page and thumbnails,
and cancel / retry through the API like every job."""
import io

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command

from apps.imports.intake import create_import
from apps.imports.models import ImportedImage, ImportJob
from apps.jobs import runner
from tests.imports.conftest import run_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_command_imports_in_process_with_a_progress_bar(tree, broker):
    source, expected = tree
    out, err = io.StringIO(), io.StringIO()
    call_command("import_dicom", str(source), stdout=out, stderr=err)
    assert "] 23/23 files" in err.getvalue()  # the bar reaches every file scanned
    assert f"new_images_uploaded {len(expected['imported'])}" in out.getvalue()
    assert "failed: 2024-01/notes.txt: not a DICOM file" in out.getvalue()
    job = ImportJob.objects.get()
    assert job.status == "partial" and job.run_inline
    assert broker.queue_size() == 0  # nothing was left on the workers' queue


def test_the_command_refuses_a_folder_outside_the_roots(import_root, tmp_path):
    with pytest.raises(CommandError, match="outside IMPORT_ROOTS"):
        call_command("import_dicom", str(tmp_path), stdout=io.StringIO())


def test_cancel_stops_the_pending_batches_and_retry_resumes_them(api, user, tree, settings, broker):
    settings.IMPORT_BATCH_SIZE = 4
    source, expected = tree
    job = create_import(str(source), user=user)
    job.start()
    scan = job.items.get(kind="scan")
    runner.run_item(scan._meta.label, scan.pk, continue_with_job=False)
    first = job.items.filter(kind="files").order_by("number").first()
    runner.run_item(first._meta.label, first.pk, continue_with_job=False)
    body = api.post(f"/api/imports/{job.task_id}/cancel/").json()
    assert body["status"] == "canceled"
    job.refresh_from_db()
    assert job.items.filter(status="canceled").count() == job.items.count() - 2
    assert job.counts()["new_images_uploaded"] + job.counts()["duplicate_images_skipped"] <= 4

    body = api.post(f"/api/imports/{job.task_id}/retry/").json()
    assert body["status"] == "running"
    job = run_job(job)
    assert job.status == "partial"  # three files of the tree cannot be imported
    assert job.counts()["new_images_uploaded"] == len(expected["imported"])
    assert job.counts()["duplicate_images_skipped"] == len(expected["duplicate"])


def test_the_admin_starts_an_import_and_shows_it_with_thumbnails(admin_client_logged_in, tree, broker):
    client = admin_client_logged_in
    source, expected = tree
    page = client.get("/admin/imports/importjob/")
    assert page.status_code == 200 and b"Start a folder import" in page.content
    refused = client.post("/admin/imports/importjob/start/", {"source_path": "/etc"})
    assert refused.status_code == 200 and b"outside IMPORT_ROOTS" in refused.content
    response = client.post("/admin/imports/importjob/start/", {"source_path": str(source), "description": "x"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/importjob/{job.pk}/change/")
    run_job(job)
    page = client.get(f"/admin/imports/importjob/{job.pk}/change/").content.decode()
    assert "2024-01/notes.txt" in page and "not a DICOM file" in page and "job-progress" in page
    images = client.get("/admin/imports/importedimage/").content.decode()
    image = ImportedImage.objects.first()
    assert f'src="/api/images/{image.pk}/jpg' in images
    assert client.get(f"/api/images/{image.pk}/jpg").status_code == 200  # the thumbnail loads for a session
    patients = client.get("/admin/imports/importedpatient/").content.decode()
    assert "P000" in patients and "Mono^One" in patients
    assert client.get(f"/admin/imports/importedpatient/{image.patient_id}/change/").status_code == 200


def test_a_staff_user_without_the_start_permission_cannot_start(client, django_user_model, tree):
    staff = django_user_model.objects.create_user(username="staff", password="x-pass-123", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_importjob"))
    client.force_login(staff)
    source, _ = tree
    assert b"Start a folder import" not in client.get("/admin/imports/importjob/").content
    assert client.post("/admin/imports/importjob/start/", {"source_path": str(source)}).status_code == 403
    assert ImportJob.objects.count() == 0
