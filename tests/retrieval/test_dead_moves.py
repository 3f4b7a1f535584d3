"""What a move that died with its worker left in staging: its key expired, its folder holds originals of
its patient. Another row's run takes both away, and a move that draws the same number again starts from
an empty folder, so nothing staged by a dead move is ever filed into another patient's case folder."""
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.dicom.staging import MoveStaging
from apps.retrieval import intake, models
from apps.retrieval.models import MoveKey, RetrievalJob
from tests.retrieval.test_retrieval_orthanc import run_inline

pytestmark = pytest.mark.django_db(transaction=True)


def dead_move(settings, item, message_id: int, planted: bytes):
    """A key that expired an hour ago and the folder its move staged an 'original' into."""
    MoveKey.objects.create(message_id=message_id, item=item, pacs_ae_title="GONE", study_instance_uid="1.2.3",
                           expires_at=timezone.now() - timedelta(hours=1))
    folder = MoveStaging(settings.STAGING_DIR).folder(settings.DICOM_AE_TITLE, message_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.2.3.4.dcm").write_bytes(planted)
    return folder


def case_list(study, server="A"):
    return intake.read_case_list(intake.rows_to_csv([{"StudyInstanceUID": study, "Server": server}]), user=None)


def test_another_rows_run_removes_a_dead_moves_key_and_staged_files(portal, orthanc_dataset, orthanc_servers,
                                                                      settings):
    dead = RetrievalJob.from_case_list(case_list(orthanc_dataset["studies"][0]["StudyInstanceUID"]), start=False)
    folder = dead_move(settings, dead.items.get(), 4242, b"DEAD MOVE'S ORIGINAL")
    job = run_inline(RetrievalJob.from_case_list(case_list(orthanc_dataset["studies"][1]["StudyInstanceUID"]),
                                                 start=False))
    assert job.status == "succeeded"
    assert not folder.exists(), "the dead move's originals do not stay on disk"
    assert not MoveKey.objects.filter(message_id=4242).exists()


def test_a_number_drawn_again_starts_from_an_empty_folder(portal, orthanc_dataset, orthanc_servers, settings,
                                                          monkeypatch):
    study = orthanc_dataset["studies"][1]["StudyInstanceUID"]
    job = RetrievalJob.from_case_list(case_list(study), start=False)
    # A folder of number 777 left by a move whose key is gone (its row deleted): the next move drawing 777
    # must not find it filled.
    folder = MoveStaging(settings.STAGING_DIR).folder(settings.DICOM_AE_TITLE, 777)
    folder.mkdir(parents=True)
    (folder / "9.9.9.dcm").write_bytes(b"STALE")
    monkeypatch.setattr(models.secrets, "randbelow", lambda _n: 776)
    job = run_inline(job)
    assert job.status == "succeeded", job.items.get().error
    filed = {p.name for p in settings.DOWNLOADS_DIR.rglob("*.dcm")}
    assert "9.9.9.dcm" not in filed and len(filed) == job.items.get().instances
