"""A research project's send jobs and inboxes into a real Orthanc: what arrives carries no planted
identifier in any character set, the same patient gets the same pseudonym and UIDs in a second job,
held-back instances are listed with their reason while the rest goes on, and the job's API body, report
and log name pseudonyms, never the originals nor the paths that name them."""
from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs import runner
from apps.jobs.models import ItemStatus, JobStatus
from apps.projects.models import Project
from apps.sending.models import Inbox, SendJob
from apps.sending.watcher import InboxWatcher
from tests.projects.planted import NAMES, PATIENT_ID, as_file, leaks, planted_dataset, read

pytestmark = pytest.mark.django_db
SC = "1.2.840.10008.5.1.4.1.1.7"
CHARSETS = list(NAMES)


@pytest.fixture
def project(db) -> Project:
    # no dates option: a shifted date could meet one of the planted dates by chance (the secret is random)
    return Project.objects.create(name="TRIAL1")


@pytest.fixture
def researcher(db, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("researcher", password="pw-123-456-789")
    user.user_permissions.set(Permission.objects.exclude(codename__in=["handle_identified_data", "view_all_jobs"]))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def planted_case(folder: Path) -> dict[str, str]:
    """Three instances of the planted patient (one per character set), one secondary capture that may
    show the patient in its pixels, and a text file; returns the charset of each original SOP UID."""
    folder.mkdir(parents=True, exist_ok=True)
    charsets = {}
    for n, charset in enumerate(CHARSETS):
        uid = f"1.2.826.0.1.3680043.8.498.7710{n}"
        ds = planted_dataset(charset, sop_uid=uid)
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.7720{n % 2}"
        (folder / f"{PATIENT_ID}_{n}.dcm").write_bytes(as_file(ds))
        charsets[uid] = charset
    sc = planted_dataset("ISO_IR 100", sop_uid="1.2.826.0.1.3680043.8.498.77199", sop_class=SC)
    (folder / f"{PATIENT_ID}_screen.dcm").write_bytes(as_file(sc))
    (folder / f"{PATIENT_ID}_notes.txt").write_text(f"patient {PATIENT_ID}")
    return charsets


def run_items(job) -> None:
    for item in job.items.filter(status=ItemStatus.PENDING):
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()


def arrived(orthanc) -> list[bytes]:
    return [orthanc.rest("GET", f"/instances/{i}/file").content for i in orthanc.rest("GET", "/instances").json()]


def no_leak_anywhere(data: bytes) -> None:
    for charset in CHARSETS:
        assert leaks(data, charset) == [], charset


def test_a_projects_send_stores_only_deidentified_instances_and_names_no_original(
        researcher, root, pacs, project, empty_orthanc):
    case = root / f"case_{PATIENT_ID}"
    planted_case(case)
    answer = researcher.post("/api/sends/", {"servers": ["PACS"], "path": str(case), "project": "TRIAL1"},
                             format="json")
    assert answer.status_code == 201, answer.content
    job = SendJob.objects.get(pk=answer.json()["id"])
    run_items(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_summary()

    stored = arrived(empty_orthanc)
    assert len(stored) == 3, "the three CT instances; the secondary capture held back, the text file skipped"
    pseudonym = project.patient(PATIENT_ID).pseudonym
    for data in stored:
        no_leak_anywhere(data)
        ds = read(data)
        assert ds.PatientID == pseudonym and str(ds.PatientName) == pseudonym
        assert ds.PatientIdentityRemoved == "YES" and ds.SOPInstanceUID.startswith("2.25.")
        assert not any(str(ds.SOPInstanceUID).endswith(f"7710{n}") for n in range(3))
    assert len({read(d).StudyInstanceUID for d in stored}) == 1, "one study, its UIDs mapped alike"

    body = researcher.get(f"/api/sends/{job.pk}/").content
    report = researcher.get(f"/api/sends/{job.pk}/report").json()
    csv = researcher.get(f"/api/sends/{job.pk}/report?output=csv").content
    for text in (body, csv, str(report).encode(), job.log.encode()):
        no_leak_anywhere(text)
        assert str(case).encode() not in text
    rows = {row["file"]: row for row in report["files"]}
    held = [row for row in report["files"] if row["reason"].startswith("held back")]
    assert len(held) == 1 and "secondary capture" in held[0]["reason"].lower(), held
    assert held[0]["file"] == f"{project.recipe().uid('1.2.826.0.1.3680043.8.498.77199')}.dcm"
    assert any(row["outcome"] == "skipped" and "not a DICOM file" in row["reason"] for row in rows.values())
    progress = researcher.get(f"/api/sends/{job.pk}/").json()["progress"]
    assert (progress["files"], progress["sent"], progress["skipped"]) == (5, 3, 2)
    assert not (Path(job.root).parent / "data" / "sending" / "work").exists() or not any(
        (Path(job.root).parent / "data" / "sending" / "work").iterdir()), "no copy left behind"


def test_two_jobs_give_the_patient_one_pseudonym_and_the_same_uids(researcher, root, pacs, project, empty_orthanc):
    planted_case(root / "first")
    planted_case(root / "second")
    for folder in ("first", "second"):
        answer = researcher.post("/api/sends/", {"servers": ["PACS"], "path": str(root / folder),
                                                 "project": "TRIAL1"}, format="json")
        run_items(SendJob.objects.get(pk=answer.json()["id"]))
        assert len(empty_orthanc.instances()) == 3, "the second job's instances are the first's"
    patients = empty_orthanc.rest("GET", "/patients?expand").json()
    assert [p["MainDicomTags"]["PatientID"] for p in patients] == [project.patient(PATIENT_ID).pseudonym]
    other = Project.objects.create(name="TRIAL2")
    answer = researcher.post("/api/sends/", {"servers": ["PACS"], "path": str(root / "first"), "project": "TRIAL2"},
                             format="json")
    run_items(SendJob.objects.get(pk=answer.json()["id"]))
    assert len(empty_orthanc.instances()) == 6, "another project: other UIDs"
    assert other.patient(PATIENT_ID).pseudonym != project.patient(PATIENT_ID).pseudonym


def test_an_inbox_with_a_project_rewrites_the_folders_patient_then_deidentifies(root, pacs, project, empty_orthanc):
    (root / "inbox").mkdir()
    box = Inbox.objects.create(name="ward", path=str(root / "inbox"), archive_path=str(root / "archived"),
                               debounce_seconds=5, project=project)
    box.destinations.set([pacs])
    folder = root / "inbox" / "#4711-Plantfolder^Hans"
    planted_case(folder)
    clock = [1000.0]
    watcher = InboxWatcher(mode="polling", clock=lambda: clock[0])
    try:
        runs = watcher.scan_once()
        clock[0] += 6
        runs += watcher.scan_once()
    finally:
        watcher.stop()
    assert len(runs) == 1
    job = runs[0]
    run_items(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_summary()
    stored = arrived(empty_orthanc)
    assert len(stored) == 3
    # the folder's patient (4711) is the one pseudonymized, not the files' own PatientID
    pseudonym = project.patient("4711").pseudonym
    assert {read(d).PatientID for d in stored} == {pseudonym}
    assert not project.pseudonyms.filter(patient_id=PATIENT_ID).exists()
    for data in stored:
        no_leak_anywhere(data)
        assert b"Plantfolder" not in data
        # the folder's PatientID in no value; UIDs are left out: 2.25.<39 random digits> may hold "4711" by chance
        values = [str(el.value) for el in read(data).iterall() if el.VR not in ("UI", "OB", "OW", "SQ", "UN")]
        assert [v for v in values if "4711" in v] == []
    runs_body = APIClient()
    from django.contrib.auth import get_user_model

    boss = get_user_model().objects.create_superuser("boss", password="pw-123-456-789", email="")
    runs_body.force_authenticate(boss)
    shown = runs_body.get("/api/inboxes/ward/runs/").content + runs_body.get(f"/api/sends/{job.pk}/").content
    shown += runs_body.get(f"/api/sends/{job.pk}/report").content
    assert b"Plantfolder" not in shown and b"#4711" not in shown and pseudonym.encode() in shown
    job.refresh_from_db()
    assert job.archive_path and Path(job.archive_path).exists(), "archived once sent"


def test_the_command_lines_send_takes_a_project(root, pacs, project, empty_orthanc, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    case = root / f"case_{PATIENT_ID}"
    planted_case(case)
    with pytest.raises(CommandError, match="NOPE7"):
        call_command("dicom", "send-dir", str(case), "--server", "PACS", "--project", "NOPE7")
    with pytest.raises(SystemExit):  # the held-back and the text file are not sent: exit 1, as for any failure
        call_command("dicom", "send-dir", str(case), "--server", "PACS", "--project", "TRIAL1")
    out, err = capsys.readouterr()
    assert "sent 3 of 5 files" in out and "held back" in err
    assert str(case) not in out + err and PATIENT_ID not in out + err
    stored = arrived(empty_orthanc)
    assert len(stored) == 3 and {read(d).PatientID for d in stored} == {project.patient(PATIENT_ID).pseudonym}


def test_two_jobs_of_one_patients_studies_keep_the_interval_between_them(researcher, root, pacs, empty_orthanc):
    from datetime import date

    from tests.projects.planted import shift_safe

    project = shift_safe(Project.objects.create(name="TRIAL3", options=["retain-longitudinal-dates"]))
    for n, study_date in enumerate(("20200301", "20210615")):
        folder = root / f"study{n}"
        folder.mkdir()
        ds = planted_dataset("ISO_IR 192", sop_uid=f"1.2.826.0.1.3680043.8.498.7780{n}", study_date=study_date)
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.7781{n}"
        (folder / "x.dcm").write_bytes(as_file(ds))
        answer = researcher.post("/api/sends/", {"servers": ["PACS"], "path": str(folder), "project": "TRIAL3"},
                                 format="json")
        run_items(SendJob.objects.get(pk=answer.json()["id"]))
    stored = sorted((read(data) for data in arrived(empty_orthanc)), key=lambda ds: ds.StudyDate)
    assert len(stored) == 2 and len({ds.StudyInstanceUID for ds in stored}) == 2

    def day(text: str) -> date:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    shift = project.patient(PATIENT_ID).date_shift_days
    assert day(stored[0].StudyDate) - day("20200301") == day(stored[1].StudyDate) - day("20210615")
    assert (day(stored[0].StudyDate) - day("20200301")).days == shift != 0
    assert day(stored[1].StudyDate) - day(stored[0].StudyDate) == day("20210615") - day("20200301")
