"""Admin pages: "Send to PACS" by path and by upload, the job page (progress, log, report), the inbox page."""
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.sending.models import Inbox, SendJob
from tests.sending.conftest import run_items, study_tree


def test_send_to_pacs_by_path_then_the_job_page(admin_client_logged_in, root, pacs, empty_orthanc):
    client = admin_client_logged_in
    study_tree(root / "cases", patients=1, instances=2)
    (root / "cases" / "notes.txt").write_text("x")
    assert 'id="send-to-pacs"' in client.get("/admin/sending/sendjob/").content.decode()
    page = client.get("/admin/sending/sendjob/send/")
    assert page.status_code == 200 and 'name="servers"' in page.content.decode()
    response = client.post("/admin/sending/sendjob/send/", {"servers": ["PACS"], "path": str(root / "cases"),
                                                           "method": "c-store"})
    job = SendJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/sendjob/{job.pk}/change/")
    run_items(job)
    assert len(empty_orthanc.instances()) == 4
    html = client.get(f"/admin/sending/sendjob/{job.pk}/change/").content.decode()
    assert "job-progress" in html and "PHASE 2 c-store to PACS: 4 stored" in html
    csv = client.get(f"/admin/sending/sendjob/{job.pk}/report.csv").content.decode()
    assert "notes.txt,,skipped," in csv


def test_send_to_pacs_by_upload_and_bad_forms(admin_client_logged_in, root, pacs, empty_orthanc):
    client = admin_client_logged_in
    study_tree(root / "cases", patients=1, instances=1)
    uploads = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted((root / "cases").rglob("*.dcm"))]
    response = client.post("/admin/sending/sendjob/send/", {"servers": ["PACS"], "files": uploads, "method": "c-store"})
    assert response.status_code == 302
    run_items(SendJob.objects.get())
    assert len(empty_orthanc.instances()) == 2
    outside = client.post("/admin/sending/sendjob/send/", {"servers": ["PACS"], "path": "/etc", "method": "c-store"})
    assert outside.status_code == 200 and "outside IMPORT_ROOTS" in outside.content.decode()
    neither = client.post("/admin/sending/sendjob/send/", {"servers": ["PACS"], "method": "c-store"})
    assert "one of the two" in neither.content.decode()
    assert SendJob.objects.count() == 1


def test_the_inbox_page_lists_unmatched_folders_and_runs(admin_client_logged_in, root, pacs):
    inbox = Inbox.objects.create(name="ward", path=str(root), archive_path=str(root.parent / "a"),
                                 unmatched=[{"folder": "12345-x", "reason": "does not match", "seen_at": "now"}])
    inbox.destinations.set([pacs])
    html = admin_client_logged_in.get(f"/admin/sending/inbox/{inbox.pk}/change/").content.decode()
    assert "12345-x" in html and "0 runs" in html
    assert admin_client_logged_in.get("/admin/sending/inbox/").status_code == 200


def test_another_users_job_is_not_shown_in_the_admin(client, root, pacs, django_user_model):
    from django.contrib.auth.models import Permission

    owner = django_user_model.objects.create_user(username="owner", password="owner-pass-123")
    job = SendJob.objects.create(created_by=owner, source_path=str(root), root=str(root))
    staff = django_user_model.objects.create_user(username="staff", password="staff-pass-123", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_sendjob", "change_sendjob"]))
    client.force_login(staff)
    assert client.get("/admin/sending/sendjob/").status_code == 200
    assert str(job) not in client.get("/admin/sending/sendjob/").content.decode()
    assert client.get(f"/admin/sending/sendjob/{job.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/sending/sendjob/{job.pk}/report.csv").status_code == 404


def test_the_send_page_needs_the_start_permission_and_server_access(client, root, pacs, django_user_model):
    from django.contrib.auth.models import Permission

    study_tree(root / "cases", patients=1, instances=1)
    staff = django_user_model.objects.create_user(username="staff", password="staff-pass-123", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename="view_sendjob"))
    client.force_login(staff)
    assert client.get("/admin/sending/sendjob/send/").status_code == 403
    assert "id=\"send-to-pacs\"" not in client.get("/admin/sending/sendjob/").content.decode()
    # may send identified data: this test is about server access (projects: tests/projects/test_wiring.py)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_sendjob", "handle_identified_data"]))
    pacs.open_to_everyone = False
    pacs.save()
    refused = client.post("/admin/sending/sendjob/send/", {"servers": ["PACS"], "path": str(root / "cases"),
                                                          "method": "c-store"})
    assert refused.status_code == 200 and "send to server" in refused.content.decode()
    assert not SendJob.objects.exists()
