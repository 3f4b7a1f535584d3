"""A research project's retrieval against a real Orthanc (C-MOVE into the portal's receiver, and C-GET):
instances filed de-identified once, as filed, under <SERVER>/<shifted date>_<pseudonym>_<modality>/
<new SOP UID>.dcm, with no planted identifier in any character set; the same files from a second job by
the other method; held-back instances listed with the reason while the rest is filed; the job's body and
report name pseudonyms only."""
from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from apps.catalog.models import Instance
from apps.dicom.peers import LocalAE
from apps.dicom.staging import MoveStaging
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.jobs import runner
from apps.projects.models import Project
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer
from tests.fixtures_common import own_data_folders, unused_port
from tests.projects.planted import NAMES, PATIENT_ID, STUDY_UID, as_file, leaks, planted_dataset, read, shift_safe
from tests.retrieval.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
SC = "1.2.840.10008.5.1.4.1.1.7"
OTHER_STUDY = "1.2.826.0.1.3680043.8.498.77501"


@pytest.fixture
def portal(settings, tmp_path, empty_orthanc):
    ae_title, port = "PORTALTEST", unused_port()
    settings.DICOM_AE_TITLE, settings.DICOM_PORT = ae_title, port
    own_data_folders(settings, tmp_path)
    receiver = Receiver(MoveStaging(settings.STAGING_DIR), ae_title)
    empty_orthanc.add_modality("PORTALTEST", ae_title, port)
    peer = empty_orthanc.peer()
    common = {"ae_title": peer.ae_title, "host": peer.host, "port": peer.port, "retries": 0}
    DicomServer.objects.create(name="A", retrieve_method="c-move", **common)
    DicomServer.objects.create(name="B", retrieve_method="c-get", **common)
    with LeanStorageSCP(LocalAE(ae_title=ae_title, port=port), receiver):
        yield receiver
    receiver.writes.close()


@pytest.fixture
def planted_pacs(empty_orthanc):
    """Study 1: three CT instances (one per character set) in two series; study 2: a CT and a secondary
    capture that may show the patient in its pixels."""
    for n, charset in enumerate(NAMES):
        ds = planted_dataset(charset, sop_uid=f"1.2.826.0.1.3680043.8.498.7760{n}")
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.7770{n % 2}"
        empty_orthanc.rest("POST", "/instances", content=as_file(ds))
    for n, sop_class in enumerate([None, SC]):
        ds = planted_dataset("ISO_IR 100", sop_uid=f"1.2.826.0.1.3680043.8.498.7780{n}", study_date="20200601",
                             **({"sop_class": sop_class} if sop_class else {}))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = OTHER_STUDY, f"1.2.826.0.1.3680043.8.498.7790{n}"
        empty_orthanc.rest("POST", "/instances", content=as_file(ds))
    return empty_orthanc


@pytest.fixture
def researcher(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("researcher", password="pw-123-456-789")
    user.user_permissions.set(Permission.objects.exclude(codename__in=["handle_identified_data", "view_all_jobs"]))
    client = APIClient()
    client.force_authenticate(user)
    return client


def retrieve(api, rows) -> RetrievalJob:
    answer = api.post("/api/retrievals/", {"rows": rows, "project": "TRIAL1"}, format="json")
    assert answer.status_code == 201, answer.content
    job = RetrievalJob.objects.get(pk=answer.json()["id"])
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()
    return job


def no_leak(data: bytes) -> None:
    for charset in NAMES:
        assert leaks(data, charset) == [], charset


def test_a_projects_retrieval_files_deidentified_instances_under_the_pseudonymized_layout(
        portal, planted_pacs, researcher, settings):
    project = shift_safe(Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"]))
    job = retrieve(researcher, [{"StudyInstanceUID": STUDY_UID, "Server": "A", "Modality": "CT"}])
    assert job.status == "succeeded", job.items.get().error
    patient = project.patient(PATIENT_ID)
    shifted = (dt.date(2020, 3, 1) + dt.timedelta(days=patient.date_shift_days)).strftime("%Y%m%d")
    folder = settings.DOWNLOADS_DIR / "A" / f"{shifted}_{patient.pseudonym}_CT"
    recipe = project.recipe()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{recipe.uid(f'1.2.826.0.1.3680043.8.498.7760{n}')}.dcm" for n in range(3))
    assert sorted(p for p in settings.DOWNLOADS_DIR.rglob("*") if p.is_file()) == sorted(folder.iterdir())
    for path in folder.iterdir():
        data = path.read_bytes()
        no_leak(data)
        ds = read(data)
        assert ds.PatientID == patient.pseudonym and ds.StudyInstanceUID == recipe.uid(STUDY_UID)
        assert ds.StudyDate == shifted
    assert not list(settings.STAGING_DIR.rglob("*.dcm")) and not list(settings.STAGING_DIR.rglob("*.deid"))
    # the catalog holds the instances as they are on disk: pseudonyms and new UIDs, never the originals
    rows = list(Instance.objects.order_by("path").values_list("path", "patient_id", "study_instance_uid",
                                                             "patient_name"))
    assert [r[0] for r in rows] == sorted(str(p.resolve()) for p in folder.iterdir())
    assert {r[1:3] for r in rows} == {(patient.pseudonym, recipe.uid(STUDY_UID))}
    no_leak("\n".join(" ".join(row) for row in rows).encode())

    shown = b"".join(researcher.get(url).content for url in (
        f"/api/retrievals/{job.pk}/", f"/api/retrievals/{job.pk}/report", f"/api/retrievals/{job.pk}/report?output=csv"))
    no_leak(shown)
    assert STUDY_UID.encode() not in shown and patient.pseudonym.encode() in shown

    # the same study by C-GET in a second job: the same names and bytes, under the other server
    again = retrieve(researcher, [{"StudyInstanceUID": STUDY_UID, "Server": "B", "Modality": "CT"}])
    assert again.status == "succeeded", again.items.get().error
    by_get = settings.DOWNLOADS_DIR / "B" / folder.name
    assert {p.name: p.read_bytes() for p in by_get.iterdir()} == {p.name: p.read_bytes() for p in folder.iterdir()}


def test_held_back_instances_are_listed_and_the_rest_is_filed(portal, planted_pacs, researcher, settings):
    project = Project.objects.create(name="TRIAL1")
    job = retrieve(researcher, [{"StudyInstanceUID": OTHER_STUDY, "Server": "A"}])
    item = job.items.get()
    assert item.status == "failed" and "not filed for the research project" in item.error
    assert "held back" in item.error and "secondary capture" in item.error.lower()
    filed = list(settings.DOWNLOADS_DIR.rglob("*.dcm"))
    recipe = project.recipe()
    assert [p.name for p in filed] == [f"{recipe.uid('1.2.826.0.1.3680043.8.498.77800')}.dcm"]
    no_leak(filed[0].read_bytes())
    body = researcher.get(f"/api/retrievals/{job.pk}/").json()["items"][0]
    assert OTHER_STUDY not in body["error"] and recipe.uid(OTHER_STUDY) in body["error"]
    assert body["PatientID"] == "" and body["instances"] == 2
