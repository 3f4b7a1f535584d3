"""A worker that dies while a project's move runs leaves the move's staging folder and the scratch folder
beside it (`<folder>.deid`) where instances were being de-identified. The scratch holds de-identified
bytes only (never an original), and the row's next run takes both away, for a C-MOVE's and a C-GET's
folders alike."""
from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.dicom.staging import MoveStaging
from apps.projects.models import Project
from apps.retrieval.deidentified import EarlyDeidentifier
from apps.retrieval.leftovers import clear_earlier_runs
from apps.retrieval.models import MoveKey, RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.projects.planted import NAMES, PATIENT_ID, as_file, leaks, planted_dataset, read

pytestmark = pytest.mark.django_db
AE = "PORTALTEST"


@pytest.fixture
def item(user):
    project = Project.objects.create(name="TRIAL1")
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    job = RetrievalJob.objects.create(created_by=user, source_name="cases.csv", project=project)
    return RetrievalItem.objects.create(job=job, line=2, patient_id=PATIENT_ID, dicom_server=server,
                                        server_name="LK", status="running")


def scratch_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".deid")


def died_mid_study(project, folder: Path) -> list[Path]:
    """A move's staging folder with the planted instances (one per character set), de-identified into its
    scratch by the early thread, then left as a killed worker leaves it (the thread stopped, never exited)."""
    folder.mkdir(parents=True)
    for n, charset in enumerate(NAMES):
        uid = f"1.2.826.0.1.3680043.8.498.7760{n}"
        (folder / f"{uid}.dcm").write_bytes(as_file(planted_dataset(charset, sop_uid=uid)))
    staging = MoveStaging(folder.parent.parent)
    passes, second_pass = [], threading.Event()

    def listing():
        passes.append(1)
        if len(passes) == 2:  # the thread is back for more: its first pass is over
            second_pass.set()
        return staging.instances(folder)

    early = EarlyDeidentifier(project.pseudonymizer(), listing, scratch_of(folder), known=[PATIENT_ID]).__enter__()
    assert second_pass.wait(30)
    early.stop()
    return sorted(scratch_of(folder).iterdir())


def test_the_scratch_of_a_dead_run_holds_no_original_and_the_next_run_removes_it(item, tmp_path):
    staging = MoveStaging(tmp_path / "staging")
    key = MoveKey.objects.create(message_id=4242, item=item, pacs_ae_title="LK", study_instance_uid="1.2.3",
                                 expires_at=timezone.now() + timedelta(minutes=5))
    folder = staging.folder(AE, key.message_id)
    left = died_mid_study(item.job.project, folder)
    assert len(left) == 3, "the early thread de-identified the staged instances into the scratch"
    pseudonym = item.job.project.patient(PATIENT_ID).pseudonym
    for path in left:
        data = path.read_bytes()
        assert read(data).PatientID == pseudonym and read(data).PatientIdentityRemoved == "YES"
        for charset in NAMES:
            assert leaks(data, charset) == [], (path.name, charset)

    clear_earlier_runs(item, staging, AE)
    assert not folder.exists() and not scratch_of(folder).exists()
    assert not any(p for p in (tmp_path / "staging").rglob("*") if p.is_file()), "nothing of the dead run is left"


def test_a_dead_c_gets_scratch_goes_with_its_folder(item, tmp_path):
    staging = MoveStaging(tmp_path / "staging")
    folder = staging.root / "c-get" / f"{item.pk}-0123abcd"
    died_mid_study(item.job.project, folder)
    other = staging.root / "c-get" / f"{item.pk + 1}-0123abcd"  # another row's run: not this row's to take
    died_mid_study(item.job.project, other)
    clear_earlier_runs(item, staging, AE)
    assert not folder.exists() and not scratch_of(folder).exists()
    assert other.exists() and scratch_of(other).exists()


def test_a_finished_moves_folder_takes_its_scratch_along(tmp_path):
    staging = MoveStaging(tmp_path / "staging")
    folder = staging.folder(AE, 7)
    (folder / "x").mkdir(parents=True)
    scratch_of(folder).mkdir()
    (scratch_of(folder) / "000000.dcm").write_bytes(b"de-identified")
    staging.remove(folder)
    assert list((tmp_path / "staging" / AE).iterdir()) == []
