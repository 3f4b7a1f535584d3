"""A delivery for a research project sends de-identified files only, whatever the target: to another
portal (this portal under live_server, over tus, unpacked there) and to a folder, zipped or not; held-back
instances are listed and stay with the originals; clearing removes the originals that were delivered."""
from __future__ import annotations

import zipfile

import pytest

from apps.delivery.models import DeliveryJob, DeliveryTarget
from apps.jobs.models import ItemStatus
from apps.projects.models import Project
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer
from tests.delivery.conftest import run_released
from tests.projects.planted import NAMES, PATIENT_ID, STUDY_UID, as_file, leaks, planted_dataset, read

pytestmark = pytest.mark.django_db(transaction=True)
SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture
def identified(user, tmp_path):
    """A finished retrieval (no project) of the planted study: three CT instances, one per character set,
    and a secondary capture, filed as retrieval files them."""
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    source = tmp_path / "source"
    folder = source / "LK" / f"20200301_{PATIENT_ID}_CT"
    folder.mkdir(parents=True)
    for n, charset in enumerate(NAMES):
        uid = f"1.2.826.0.1.3680043.8.498.7790{n}"
        (folder / f"{uid}.dcm").write_bytes(as_file(planted_dataset(charset, sop_uid=uid)))
    sc = "1.2.826.0.1.3680043.8.498.77999"
    (folder / f"{sc}.dcm").write_bytes(as_file(planted_dataset("ISO_IR 100", sop_uid=sc, sop_class=SC)))
    job = RetrievalJob.objects.create(created_by=user, source_name="cases.csv", output_dir=str(source),
                                      status="succeeded")
    RetrievalItem.objects.create(job=job, line=2, patient_id=PATIENT_ID, study_date="20200301", modality="CT",
                                 dicom_server=server, server_name="LK", status=ItemStatus.SUCCEEDED,
                                 study_instance_uid=STUDY_UID, expected=4, instances=4,
                                 path=str(folder.relative_to(source)),
                                 result={"studies": [{"StudyInstanceUID": STUDY_UID, "folder": str(folder)}]})
    job.source, job.folder = source, folder
    return job


def no_leak(data: bytes) -> None:
    for charset in NAMES:
        assert leaks(data, charset) == [], charset


def test_a_delivery_to_another_portal_carries_only_deidentified_files(identified, receiving, uploader, user,
                                                                      settings):
    project = Project.objects.create(name="TRIAL1")
    target = DeliveryTarget.objects.create(name="FAR", kind="portal", url=receiving.url, token=uploader.token)
    job = DeliveryJob.for_retrieval(identified, target, user=user, mode="zip", batch_size=5, project=project)
    run_released(job)
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    arrived = sorted(receiving.downloads.rglob("*.dcm"))
    pseudonym = project.patient(PATIENT_ID).pseudonym
    recipe = project.recipe()
    assert sorted(p.name for p in arrived) == sorted(f"{recipe.uid(f'1.2.826.0.1.3680043.8.498.7790{n}')}.dcm"
                                                    for n in range(3))
    for path in arrived:
        assert PATIENT_ID not in str(path) and pseudonym in str(path)
        no_leak(path.read_bytes())
        assert read(path.read_bytes()).PatientID == pseudonym
    batch = job.items.get()
    assert batch.result["not_delivered"] == [[recipe.uid("1.2.826.0.1.3680043.8.498.77999"),
                                              batch.result["not_delivered"][0][1]]]
    # the delivered originals are cleared; the held-back one stays with the retrieval
    assert [p.name for p in identified.folder.iterdir()] == ["1.2.826.0.1.3680043.8.498.77999.dcm"]
    assert not (settings.DATA_DIR / "delivery" / "work").exists() or not any(
        (settings.DATA_DIR / "delivery" / "work").iterdir())


@pytest.mark.parametrize("mode", ["zip", "direct"])
def test_a_delivery_to_a_folder_writes_deidentified_files_only(identified, user, tmp_path, settings, mode):
    settings.DELIVERY_ROOTS = [tmp_path.resolve()]
    project = Project.objects.create(name="TRIAL1")
    drop = tmp_path / "drop"
    drop.mkdir()
    target = DeliveryTarget.objects.create(name="DROP", kind="folder", path=str(drop))
    job = DeliveryJob.for_retrieval(identified, target, user=user, mode=mode, batch_size=5, clear=False,
                                    project=project)
    run_released(job)
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    written = [p for p in drop.rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert PATIENT_ID not in str(path)
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    assert PATIENT_ID not in name
                    no_leak(archive.read(name))
                assert len(archive.namelist()) == 3
        else:
            no_leak(path.read_bytes())
    assert len(list(identified.folder.iterdir())) == 4, "clear=False keeps every original"


@pytest.mark.parametrize("kind", ["dicom", "dicomweb"])
def test_a_delivery_to_a_pacs_stores_deidentified_instances_only(identified, empty_orthanc, user, trusted_loopback,
                                                                data_folders, kind):
    project = Project.objects.create(name="TRIAL1")
    peer = empty_orthanc.peer()
    server = DicomServer.objects.create(name="SPARE", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                        retries=0, dicomweb_url=empty_orthanc.dicomweb().base_url)
    target = DeliveryTarget.objects.create(name="TOPACS", kind=kind, server=server)
    job = DeliveryJob.for_retrieval(identified, target, user=user, batch_size=5, clear=False, project=project)
    run_released(job)
    assert job.status == "succeeded", [b.error for b in job.items.all()]
    stored = [empty_orthanc.rest("GET", f"/instances/{i}/file").content
              for i in empty_orthanc.rest("GET", "/instances").json()]
    assert len(stored) == 3, "the three CT instances; the secondary capture held back"
    pseudonym = project.patient(PATIENT_ID).pseudonym
    for data in stored:
        no_leak(data)
        assert read(data).PatientID == pseudonym and read(data).StudyInstanceUID == project.recipe().uid(STUDY_UID)
    assert not any((data_folders.DATA_DIR / "delivery" / "work").rglob("*")), "the de-identified copies are removed"
