"""POST /api/studies end to end into a real Orthanc: C-STORE and STOW-RS, read back through Orthanc's
REST API; the failures a phone must tell apart (400, 502, 504) with what was stored."""
import io
import logging
import time
from pathlib import Path

import pydicom
import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.catalog.models import Instance
from apps.jobs.runner import run_inline
from apps.photos.models import PhotoSend, PhotoUpload
from apps.servers.models import DicomServer
from tests.photos import images
from tests.photos.conftest import may_send_photos, post_photos

pytestmark = [pytest.mark.django_db, pytest.mark.orthanc]
CHINESE_NAME = "王^大明"


def stored_files(orthanc) -> list[pydicom.Dataset]:
    """Every instance Orthanc holds, as the files it stored, in instance-number order."""
    files = [pydicom.dcmread(io.BytesIO(orthanc.rest("GET", f"/instances/{i}/file").content))
             for i in orthanc.rest("GET", "/instances").json()]
    return sorted(files, key=lambda ds: int(ds.InstanceNumber))


def test_two_photos_become_one_series_rotated_resized_and_named_in_chinese(api, user, destination, empty_orthanc,
                                                                            rotated_jpeg, alpha_png, settings):
    response = post_photos(api, [rotated_jpeg, alpha_png], patientName=CHINESE_NAME, birthDate="1990-01-15",
                           sex="M", examDateTime="2025-03-01T14:30:00+08:00", examDescription="皮膚 Skin photo")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success"
    assert [(i["index"], i["status"]) for i in body["instances"]] == [(1, "success"), (2, "success")]
    assert body["pacs"] == {"server": "PHOTOPACS", "calledAET": "SPARE", "host": "127.0.0.1",
                            "port": empty_orthanc.dicom_port}

    jpeg, png = stored_files(empty_orthanc)
    for ds, number in ((jpeg, 1), (png, 2)):
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.InstanceNumber == number
        assert ds.StudyInstanceUID == body["studyInstanceUID"] and ds.SeriesInstanceUID == body["seriesInstanceUID"]
        assert ds.SOPInstanceUID == body["instances"][number - 1]["sopInstanceUID"]
        assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == CHINESE_NAME
        assert (ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == ("P-001", "19900115", "M")
        assert (ds.StudyDate, ds.StudyTime, ds.TimezoneOffsetFromUTC) == ("20250301", "143000", "+0800")
        assert ds.StudyDescription == "皮膚 Skin photo" and ds.Modality == "OT" and ds.ConversionType == "WSD"
        assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated) == (3, "RGB", 8)
    # EXIF orientation 6: 400x200 turned upright to 200 wide, 400 high, red on top
    assert (jpeg.Columns, jpeg.Rows) == (200, 400)
    assert images.near(jpeg.pixel_array[20, 100], images.RED) and images.near(jpeg.pixel_array[380, 100], images.BLUE)
    # 3000x2000 PNG: long edge 1024, transparent half flattened to white
    assert (png.Columns, png.Rows) == (1024, 683)
    assert images.near(png.pixel_array[300, 100], images.WHITE) and images.near(png.pixel_array[300, 900], images.GREEN)
    # sent by our AE title; Orthanc's own index has the name intact too
    for orthanc_id in empty_orthanc.rest("GET", "/instances").json():
        assert empty_orthanc.rest("GET", f"/instances/{orthanc_id}/metadata/RemoteAET").text == settings.DICOM_AE_TITLE
    study = empty_orthanc.find("Study", {"StudyInstanceUID": body["studyInstanceUID"]})[0]
    assert study["PatientMainDicomTags"]["PatientName"] == CHINESE_NAME

    upload = PhotoUpload.objects.get(pk=body["upload"])
    assert upload.status == "succeeded" and upload.created_by == user
    assert not Path(upload.folder).exists()  # originals and DICOM files go once the PACS has them all
    event = AuditEvent.objects.get(action="photos.uploaded")
    assert event.actor == user and event.target == f"photos.PhotoUpload:{upload.pk}"
    assert event.details | {"patient_id": "P-001", "server": "PHOTOPACS", "photos": 2, "stored": 2} == event.details
    stored = AuditEvent.objects.get(action="photos.stored")
    assert stored.actor == user and stored.details["instances"] == [i["sopInstanceUID"] for i in body["instances"]]


def test_stow_rs_after_switching_the_settings(api, staff_api, destination, empty_orthanc, rotated_jpeg, alpha_png):
    changed = staff_api.put("/api/settings", {"settings": {"backend": "dicomweb", "localResizeMax": 512}},
                            format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["settings"]["backend"] == "dicomweb"
    assert api.get("/api/settings/info").json()["pacsBackend"] == "dicomweb"

    response = post_photos(api, [rotated_jpeg, alpha_png], patientName=CHINESE_NAME)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["pacs"] == {"server": "PHOTOPACS", "url": destination.dicomweb_url}
    _, png = stored_files(empty_orthanc)
    assert str(png.PatientName) == CHINESE_NAME and png.SeriesInstanceUID == body["seriesInstanceUID"]
    assert (png.Columns, png.Rows) == (512, 341)  # the new resize setting, without a restart
    assert empty_orthanc.study_instances(body["studyInstanceUID"]) == {i["sopInstanceUID"] for i in body["instances"]}


def test_no_token_is_401_in_the_contract_shape(destination, rotated_jpeg):
    response = post_photos(APIClient(), [rotated_jpeg])
    assert response.status_code == 401
    assert response.json()["status"] == "error" and response.json()["code"] == "UNAUTHORIZED"
    assert not PhotoUpload.objects.exists()


def test_without_the_send_photos_permission_it_is_403(destination, rotated_jpeg, django_user_model, client):
    outsider = django_user_model.objects.create_user(username="visitor", password="visitor-pass-123")
    caller = APIClient()
    caller.force_authenticate(outsider)
    response = post_photos(caller, [rotated_jpeg])
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    assert "send photos" in response.json()["message"] and not PhotoUpload.objects.exists()
    client.force_login(outsider)
    assert client.get("/photos/").status_code == 403


def test_a_text_file_named_jpg_is_refused_by_content(api, destination, empty_orthanc, rotated_jpeg, text_as_jpeg):
    response = post_photos(api, [rotated_jpeg, text_as_jpeg])
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR" and "images[2] (notes.jpg)" in body["message"]
    assert "content" in body["message"]
    assert empty_orthanc.instances() == set() and not PhotoUpload.objects.exists()  # nothing half-sent
    assert AuditEvent.objects.filter(action="photos.refused").count() == 1


@pytest.mark.parametrize("fields, problem", [
    ({"patientId": ""}, "patientId: is required"),
    ({"birthDate": "15/01/1990"}, "birthDate"),
    ({"sex": "X"}, "sex"),
    ({"examDateTime": "yesterday"}, "examDateTime"),
    ({"patientName": "A\\B"}, "patientName"),
    ({"server": "NOWHERE"}, "server"),
])
def test_bad_fields_are_400_naming_the_field(api, destination, rotated_jpeg, fields, problem):
    response = post_photos(api, [rotated_jpeg], **fields)
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"
    assert problem in response.json()["message"]


def test_no_photo_at_all_is_400(api, destination):
    response = api.post("/api/studies", {"patientId": "P-001"}, format="multipart")
    assert response.status_code == 400 and "images[]" in response.json()["message"]


def test_an_oversized_photo_is_refused_while_it_arrives(api, destination, photo_settings, tmp_path, empty_orthanc):
    photo_settings.max_upload_mb = 1
    photo_settings.save()
    big = tmp_path / "huge.png"
    big.write_bytes(images.plain(tmp_path / "seed.png", "PNG").read_bytes() + b"\0" * (2 * 2**20))
    response = post_photos(api, [big])
    assert response.status_code == 400
    assert "huge.png is larger than the 1 MB" in response.json()["message"]
    assert empty_orthanc.instances() == set()


def test_a_2_gb_upload_is_refused_before_a_byte_is_read(api, destination):
    body = b"--X\r\nContent-Disposition: form-data; name=\"patientId\"\r\n\r\nP-001\r\n--X--\r\n"
    response = api.post("/api/studies", data=body, content_type="multipart/form-data; boundary=X",
                        CONTENT_LENGTH=str(2 * 2**30))  # what the client announces; the rest never comes
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR"
    assert "the upload is 2048 MB; at most 30 photos of 20 MB each" in response.json()["message"]


def test_a_pacs_that_never_answers_is_504_within_the_timeout(api, destination, photo_settings, silent_listener,
                                                             rotated_jpeg):
    port, accepted = silent_listener
    DicomServer.objects.filter(pk=destination.pk).update(port=port)
    photo_settings.timeout_seconds = 2
    photo_settings.save()
    started = time.monotonic()
    response = post_photos(api, [rotated_jpeg])
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.content
    body = response.json()
    assert body["code"] == "PACS_TIMEOUT" and accepted  # the TCP connection was made; no answer came
    assert body["instances"][0]["status"] == "failed"
    assert elapsed < 2 + 3
    upload = PhotoUpload.objects.get()
    assert upload.status == "failed" and Path(upload.folder).is_dir()  # kept for a retry


def test_a_refused_connection_is_504(api, destination, free_port, rotated_jpeg):
    DicomServer.objects.filter(pk=destination.pk).update(port=free_port)
    response = post_photos(api, [rotated_jpeg])
    assert response.status_code == 504 and response.json()["code"] == "PACS_TIMEOUT"


def test_a_rejected_association_is_502_and_a_retry_sends_what_is_missing(api, destination, empty_orthanc,
                                                                        rotated_jpeg, alpha_png):
    DicomServer.objects.filter(pk=destination.pk).update(ae_title="NOT_SPARE")  # Orthanc checks the called AE
    response = post_photos(api, [rotated_jpeg, alpha_png])
    assert response.status_code == 502, response.content
    body = response.json()
    assert body["code"] == "PACS_REJECTED" and "rejected the association" in body["message"]
    assert [i["status"] for i in body["instances"]] == ["failed", "failed"]
    assert empty_orthanc.instances() == set()

    # Nothing is lost: the files wait, and once the server is fixed the same item finishes the job.
    DicomServer.objects.filter(pk=destination.pk).update(ae_title=empty_orthanc.aet)
    upload = PhotoUpload.objects.get(pk=body["upload"])
    folder = Path(upload.folder)
    assert len(list(folder.glob("*.dcm"))) == 2 and len(list((folder / "originals").iterdir())) == 2
    PhotoSend.objects.filter(job=upload).update(status="pending", error="", attempts=0)
    item = run_inline(upload).items.get()
    assert item.status == "succeeded"
    assert empty_orthanc.instances() == {i["sopInstanceUID"] for i in body["instances"]}
    assert not folder.exists()


def test_the_server_field_picks_the_destination_by_name_in_any_case(api, destination, empty_orthanc, rotated_jpeg):
    response = post_photos(api, [rotated_jpeg], server="photopacs")
    assert response.status_code == 200 and response.json()["pacs"]["server"] == "PHOTOPACS"


def test_keep_files_on_success_keeps_the_photo_and_its_dicom(api, destination, photo_settings, rotated_jpeg):
    photo_settings.keep_files_on_success = True
    photo_settings.save()
    body = post_photos(api, [rotated_jpeg]).json()
    upload = PhotoUpload.objects.get(pk=body["upload"])
    folder = Path(upload.folder)
    assert (folder / "001.dcm").is_file() and (folder / "originals" / "001.jpg").read_bytes() == rotated_jpeg.read_bytes()
    row = Instance.objects.get()  # the kept DICOM, not the original JPEG, is in the catalog
    assert (row.path, row.source, row.job_id, row.owner_id) == (str((folder / "001.dcm").resolve()), "photo",
                                                                str(upload.pk), upload.created_by_id)
    upload.remove_files()
    assert not Instance.objects.exists()


def test_the_flags_leave_out_patient_details_and_description(api, destination, photo_settings, empty_orthanc,
                                                             rotated_jpeg):
    photo_settings.include_patient_info_except_id = False
    photo_settings.include_exam_description = False
    photo_settings.save()
    assert post_photos(api, [rotated_jpeg], patientName=CHINESE_NAME, birthDate="1990-01-15", sex="F",
                       examDescription="hidden").status_code == 200
    (ds,) = stored_files(empty_orthanc)
    assert ds.PatientID == "P-001" and str(ds.PatientName) == "" and ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert "StudyDescription" not in ds


def test_patient_data_stays_out_of_logs_above_debug(api, destination, rotated_jpeg, caplog):
    with caplog.at_level(logging.INFO):
        assert post_photos(api, [rotated_jpeg], patientId="SECRET-ID-77", patientName="SECRETNAME").status_code == 200
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    assert "photo upload" in text  # the upload is logged...
    assert "SECRET-ID-77" not in text and "SECRETNAME" not in text  # ...without the patient


def test_users_see_only_their_own_uploads(api, destination, rotated_jpeg, django_user_model):
    mine = post_photos(api, [rotated_jpeg]).json()["upload"]
    other = APIClient()  # may send photos and see uploads too, but not everyone's
    other.force_authenticate(may_send_photos(django_user_model.objects.create_user(username="other",
                                                                                    password="other-pass-123")))
    assert other.get(f"/api/photo-uploads/{mine}/").status_code == 404
    assert other.get("/api/photo-uploads/").json() == []
    own = api.get(f"/api/photo-uploads/{mine}").json()
    assert own["status"] == "succeeded" and own["progress"]["stored"] == 1


def test_heic_webp_bmp_and_tiff_from_one_phone_arrive_in_order(api, destination, empty_orthanc, tmp_path):
    photos = [images.plain(tmp_path / name, fmt, size=(120, 90), color=color) for name, fmt, color in (
        ("IMG_0001.HEIC", "HEIF", images.RED), ("b.webp", "WEBP", images.GREEN), ("c.bmp", "BMP", images.BLUE),
        ("d.tif", "TIFF", images.WHITE))]
    response = post_photos(api, photos)
    assert response.status_code == 200, response.content
    stored = stored_files(empty_orthanc)
    assert [int(ds.InstanceNumber) for ds in stored] == [1, 2, 3, 4]
    for ds, color in zip(stored, (images.RED, images.GREEN, images.BLUE, images.WHITE)):
        assert (ds.Columns, ds.Rows) == (120, 90) and images.near(ds.pixel_array[45, 60], color)
    assert stored[0].LossyImageCompressionMethod == "ISO_23008_2"  # HEIC is HEVC-compressed, and says so


def test_jpeg_baseline_setting_stores_compressed_instances(api, staff_api, destination, empty_orthanc, rotated_jpeg):
    staff_api.put("/api/settings", {"settings": {"localTransferSyntax": "1.2.840.10008.1.2.4.50"}}, format="json")
    assert post_photos(api, [rotated_jpeg]).status_code == 200
    (ds,) = stored_files(empty_orthanc)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50" and ds.PhotometricInterpretation == "YBR_FULL_422"
    assert images.near(ds.pixel_array[20, 100], images.RED, 60)  # pydicom decodes YBR to RGB by default
