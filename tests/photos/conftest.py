"""Photo tests: the real Orthanc (SPARE, emptied per test) as the destination, photo files made on the fly."""
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.photos.models import PhotoSettings
from apps.servers.models import DicomServer
from tests.fixtures_common import trust_url_host
from tests.photos import images

PHOTO_SENDER = ["send_photos", "view_photosettings", "view_photoupload", "change_photoupload"]


def may_send_photos(person):
    person.user_permissions.add(*Permission.objects.filter(content_type__app_label="photos", codename__in=PHOTO_SENDER))
    return person


@pytest.fixture
def user(db, django_user_model):
    """A technologist who may send photos, see the photo settings and their own uploads; nothing else."""
    return may_send_photos(django_user_model.objects.create_user(username="tech", password="tech-pass-123"))


@pytest.fixture
def photo_settings(db, settings, tmp_path):
    settings.PHOTOS_DIR = tmp_path / "photos"
    return PhotoSettings.load()


@pytest.fixture
def destination(photo_settings, empty_orthanc, settings):
    """Orthanc SPARE as server PHOTOPACS, with its DICOMweb URL, set as the photo destination."""
    server = DicomServer.objects.create(
        name="PHOTOPACS", ae_title=empty_orthanc.aet, host="127.0.0.1", port=empty_orthanc.dicom_port,
        dicomweb_url=trust_url_host(settings, f"http://127.0.0.1:{empty_orthanc.http_port}/dicom-web"), retries=0)
    photo_settings.destination = server
    photo_settings.timeout_seconds = 10
    photo_settings.save()
    return server


@pytest.fixture
def staff_api(db, django_user_model):
    boss = django_user_model.objects.create_superuser(username="photoboss", password="boss-pass-123", email="")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=boss).key}")
    client.user = boss
    return client


@pytest.fixture
def rotated_jpeg(tmp_path):
    return images.rotated_jpeg(tmp_path / "rotated.jpg")


@pytest.fixture
def alpha_png(tmp_path):
    return images.large_png_with_alpha(tmp_path / "big-alpha.png")


@pytest.fixture
def text_as_jpeg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("This is a text file with a photo's name.\n")
    return path


def post_photos(client, paths, **fields):
    """POST /api/studies as the phone page does: multipart, images[] several times."""
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post("/api/studies", {"patientId": "P-001", **fields, "images[]": handles}, format="multipart")
    finally:
        for handle in handles:
            handle.close()
