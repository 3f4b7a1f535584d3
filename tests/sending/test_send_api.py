"""POST /api/sends/ end to end into a real Orthanc, the report, and the attacks: paths outside the roots,
symbolic links out of them, other users' jobs, no credentials."""
import os
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.jobs.models import JobStatus
from apps.sending.models import SendJob
from tests.fixtures_common import trust_url_host
from tests.sending.conftest import run_items, sop_uids, study_tree


@pytest.fixture
def folder(root) -> Path:
    """Nested series plus a non-DICOM file and a truncated DICOM file."""
    top = root / "cases"
    study_tree(top, patients=2, instances=3)
    (top / "notes.txt").write_text("not an image")
    sample = next(top.rglob("IMG*.dcm")).read_bytes()
    (top / "deep" / "er").mkdir(parents=True)
    (top / "deep" / "er" / "cut.dcm").write_bytes(sample[: len(sample) // 2])
    return top


def test_a_folder_is_sent_and_bad_files_are_reported_skipped(api, folder, pacs, empty_orthanc):
    uids = sop_uids(folder)  # the truncated file is a cut copy of one of them
    response = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)}, format="json")
    assert response.status_code == 201, response.content
    job = SendJob.objects.get(pk=response.json()["id"])
    run_items(job)
    body = api.get(f"/api/sends/{job.pk}/").json()
    assert body["status"] == JobStatus.SUCCEEDED, body
    assert empty_orthanc.instances() == uids and len(uids) == 12
    progress = body["progress"]
    assert (progress["files"], progress["sent"], progress["skipped"], progress["not_stored"]) == (14, 12, 2, 0)
    assert progress["megabytes"] > 0 and body["servers"] == ["PACS"]
    assert progress["bytes"] == sum(p.stat().st_size for p in folder.rglob("IMG*.dcm"))  # what landed
    report = api.get(f"/api/sends/{job.pk}/report").json()
    reasons = {row["file"]: (row["outcome"], row["reason"]) for row in report["files"]}
    assert reasons["notes.txt"][0] == "skipped" and "not a DICOM file" in reasons["notes.txt"][1]
    assert reasons["deep/er/cut.dcm"][0] == "skipped" and "truncated" in reasons["deep/er/cut.dcm"][1]
    csv = api.get(f"/api/sends/{job.pk}/report?output=csv")
    assert csv["Content-Type"].startswith("text/csv")
    assert csv.content.decode().splitlines()[0] == "file,server,outcome,reason" and "notes.txt" in csv.content.decode()


def _uid_of(path: Path) -> str:
    from apps.dicom import files

    return files.read_meta(path).sop_instance_uid


def test_one_file_is_sent(api, folder, pacs, empty_orthanc):
    one = next(folder.rglob("IMG*.dcm"))
    job_id = api.post("/api/sends", {"servers": ["PACS"], "path": str(one)}, format="json").json()["id"]
    run_items(SendJob.objects.get(pk=job_id))
    assert empty_orthanc.instances() == {_uid_of(one)}


def test_uploaded_files_are_sent_then_the_copies_removed(api, folder, pacs, empty_orthanc, settings):
    dicoms = sorted(folder.rglob("IMG*.dcm"))[:3]
    uploads = [SimpleUploadedFile(p.name, p.read_bytes()) for p in dicoms]
    uploads.append(SimpleUploadedFile("../../evil.txt", b"hello"))  # a name that tries to climb out
    response = api.post("/api/sends/", {"servers": "PACS", "files": uploads}, format="multipart")
    assert response.status_code == 201, response.content
    job = SendJob.objects.get(pk=response.json()["id"])
    assert Path(job.source_path).is_relative_to(Path(settings.DATA_DIR) / "sending" / "uploads")
    assert sorted(os.listdir(job.source_path))[-1] == "00003_evil.txt"
    run_items(job)
    assert job.status == JobStatus.SUCCEEDED
    assert empty_orthanc.instances() == {_uid_of(p) for p in dicoms}
    assert job.progress()["skipped"] == 1
    assert not Path(job.source_path).exists()  # every file stored: the portal's copies are gone


@pytest.mark.parametrize("where", ["/etc", "{root}/../outside", "relative/path", ""])
def test_a_path_outside_the_import_roots_is_refused(api, root, pacs, where):
    (root.parent / "outside").mkdir(exist_ok=True)
    response = api.post("/api/sends/", {"servers": ["PACS"], "path": where.format(root=root)}, format="json")
    assert response.status_code == 400
    assert not SendJob.objects.exists()


def test_a_symlink_to_a_folder_outside_the_roots_is_refused(api, root, pacs, tmp_path):
    secret = tmp_path / "secret"
    study_tree(secret, patients=1, instances=1)
    (root / "link").symlink_to(secret)
    response = api.post("/api/sends/", {"servers": ["PACS"], "path": str(root / "link")}, format="json")
    assert response.status_code == 400 and "outside IMPORT_ROOTS" in response.json()["error"]


def test_a_symlinked_file_leading_out_of_the_root_is_skipped_unread(api, folder, pacs, tmp_path, empty_orthanc):
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(next(folder.rglob("IMG*.dcm")).read_bytes())
    (folder / "sneaky.dcm").symlink_to(outside)
    job = SendJob.objects.get(pk=api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)},
                                          format="json").json()["id"])
    run_items(job)
    rows = {r["file"]: r["reason"] for r in api.get(f"/api/sends/{job.pk}/report").json()["files"]}
    assert "outside the allowed folder" in rows["sneaky.dcm"]


def test_bad_requests_say_what_is_wrong(api, folder, pacs):
    cases = [({"servers": ["NOPE"], "path": str(folder)}, "Unknown server(s): NOPE"),
             ({"servers": [], "path": str(folder)}, "servers"),
             ({"servers": ["PACS"]}, "either 'path'"),
             ({"servers": ["PACS"], "path": str(folder / "missing")}, "does not exist"),
             ({"servers": ["PACS"], "path": str(folder), "method": "stow-rs"}, "DICOMweb URL")]
    for body, words in cases:
        response = api.post("/api/sends/", body, format="json")
        assert response.status_code == 400, body
        assert words in response.content.decode(), (body, response.content)


def test_stow_rs_sends_to_a_dicomweb_server(api, folder, pacs, empty_orthanc, settings):
    pacs.dicomweb_url = trust_url_host(settings, empty_orthanc.dicomweb().base_url)
    pacs.save()
    job_id = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder), "method": "stow-rs"},
                      format="json").json()["id"]
    job = SendJob.objects.get(pk=job_id)
    run_items(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_summary()
    assert len(empty_orthanc.instances()) == 12 and job.progress()["sent"] == 12


def test_a_failing_destination_fails_the_job_with_the_reason(api, folder, pacs, free_port):
    pacs.port = free_port
    pacs.save()
    job = SendJob.objects.get(pk=api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)},
                                          format="json").json()["id"])
    run_items(job)
    body = api.get(f"/api/sends/{job.pk}/").json()
    assert body["status"] == JobStatus.FAILED and "connection refused" in body["error"]
    failed = [r for r in api.get(f"/api/sends/{job.pk}/report").json()["files"] if r["outcome"] == "failed"]
    # 12 good files and the truncated one: a file proves itself complete only when it is about to be sent
    assert len(failed) == 13 and all(r["server"] == "PACS" for r in failed)
    assert folder.is_dir() and len(list(folder.rglob("*.dcm"))) == 13  # nothing of the source touched


def test_sends_need_credentials_and_other_users_jobs_are_not_found(api, client, folder, pacs, django_user_model):
    assert client.get("/api/sends/").status_code in (401, 403)
    assert client.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)},
                       content_type="application/json").status_code in (401, 403)
    mine = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)}, format="json").json()["id"]
    other = django_user_model.objects.create_user(username="other", password="other-pass-123")
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    other.user_permissions.set(Permission.objects.filter(content_type__app_label="sending"))  # all but others' jobs

    stranger = APIClient()
    stranger.force_authenticate(other)
    assert stranger.get(f"/api/sends/{mine}/").status_code == 404
    assert stranger.get(f"/api/sends/{mine}/report").status_code == 404
    assert stranger.post(f"/api/sends/{mine}/cancel/").status_code == 404
    assert stranger.get("/api/sends/").json() == [] or stranger.get("/api/sends/").json().get("results") == []


def test_cancel_and_retry(api, folder, pacs, free_port, empty_orthanc):
    real_port, pacs.port = pacs.port, free_port
    pacs.save()
    job_id = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)}, format="json").json()["id"]
    job = SendJob.objects.get(pk=job_id)
    run_items(job)
    assert job.status == JobStatus.FAILED
    pacs.port = real_port
    pacs.save()
    assert api.post(f"/api/sends/{job_id}/retry/").status_code == 200
    run_items(job)
    assert job.status == JobStatus.SUCCEEDED and len(empty_orthanc.instances()) == 12
    second = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)}, format="json").json()["id"]
    assert api.post(f"/api/sends/{second}/cancel/").json()["status"] == JobStatus.CANCELED


def test_a_server_closed_to_the_users_groups_refuses_the_send(api, user, folder, pacs, empty_orthanc):
    from django.contrib.auth.models import Group

    pacs.open_to_everyone = False
    pacs.save()
    response = api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)}, format="json")
    assert response.status_code == 403 and "send to server 'PACS'" in response.json()["detail"]
    assert not SendJob.objects.exists()
    senders = Group.objects.create(name="senders")
    pacs.send_groups.add(senders)
    user.groups.add(senders)
    job = SendJob.objects.get(pk=api.post("/api/sends/", {"servers": ["PACS"], "path": str(folder)},
                                          format="json").json()["id"])
    user.groups.remove(senders)  # access withdrawn before the job ran
    run_items(job)
    assert job.status == JobStatus.FAILED and "send to server 'PACS'" in job.error_summary()
    assert empty_orthanc.instances() == set()
