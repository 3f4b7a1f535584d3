"""A study opens from the admin: a "View" link beside a retrieved row's StudyInstanceUID, on an imported
patient's page and on a catalogued instance (list and page), each pointing at /viewer/?StudyInstanceUIDs=…"""
import re

import pytest

from apps.imports.models import ImportedImage, ImportedPatient
from apps.jobs.models import ItemStatus
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db

STUDY, OTHER = "1.2.826.0.1.3680043.8.498.501", "1.2.826.0.1.3680043.8.498.502"


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("chief", password="chief-pass-123"))
    return client


def view_links(html: str) -> list[str]:
    return re.findall(r'<a class="view-study" href="([^"]+)">View</a>', html)


def test_a_retrieved_row_links_its_study_and_a_failed_row_does_not(admin_client, django_user_model):
    job = RetrievalJob.objects.create(created_by=django_user_model.objects.get(username="chief"),
                                      source_name="cases.csv", status="partial")
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    for line, uid, status in ((2, STUDY, ItemStatus.SUCCEEDED), (3, OTHER, ItemStatus.FAILED)):
        RetrievalItem.objects.create(job=job, line=line, patient_id="P1", study_date="20200301", server_name="LK",
                                     dicom_server=server,
                                     status=status, study_instance_uid=uid)
    html = admin_client.get(f"/admin/retrieval/retrievaljob/{job.pk}/change/").content.decode()
    assert view_links(html) == [f"/viewer/?StudyInstanceUIDs={STUDY}"]


def test_an_imported_patient_links_all_their_studies(admin_client):
    patient = ImportedPatient.objects.create(patient_id="P1")
    for n, uid in enumerate((STUDY, OTHER, STUDY, "")):
        ImportedImage.objects.create(patient=patient, original_filename=f"{n}.dcm", sop_instance_uid=f"1.2.3.{n}",
                                     study_instance_uid=uid, width=1, height=1, jpg=f"x/{n}.jpg",
                                     source_path=f"/nowhere/{n}.dcm")
    html = admin_client.get(f"/admin/imports/importedpatient/{patient.pk}/change/").content.decode()
    assert view_links(html) == [f"/viewer/?StudyInstanceUIDs={STUDY}%2C{OTHER}"]


def test_a_patient_without_study_uids_has_no_link(admin_client):
    patient = ImportedPatient.objects.create(patient_id="P2")
    html = admin_client.get(f"/admin/imports/importedpatient/{patient.pk}/change/").content.decode()
    assert view_links(html) == []


def test_a_catalogued_instance_links_its_study(admin_client, django_user_model):
    from apps.catalog.models import Instance

    row = Instance.objects.create(path="/data/downloads/LK/a.dcm", source="retrieved", study_instance_uid=STUDY,
                                  series_instance_uid=f"{STUDY}.1", sop_instance_uid=f"{STUDY}.1.1",
                                  sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                                  owner=django_user_model.objects.get(username="chief"))
    listing = admin_client.get("/admin/catalog/instance/").content.decode()
    assert view_links(listing) == [f"/viewer/?StudyInstanceUIDs={STUDY}"]
    page = admin_client.get(f"/admin/catalog/instance/{row.pk}/change/").content.decode()
    assert view_links(page) == [f"/viewer/?StudyInstanceUIDs={STUDY}"]
