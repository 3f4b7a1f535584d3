"""A folder import end to end through the API: exact counts, every failure named, JPEGs with the right
size and polarity served to logged-in users only, notes for folder fallbacks and disagreeing headers."""
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

from apps.catalog.models import Instance
from apps.dicom.catalog_entry import read_entry
from apps.imports.models import ImportedImage, ImportedPatient, ImportJob
from tests.imports.conftest import run_job
from tests.imports.tree import REAL_J2K, REAL_RLE

pytestmark = pytest.mark.django_db(transaction=True)
SERVICE_PROGRESS_KEYS = {"total_files_scanned", "total_patients_found", "new_patients_created",
                      "existing_patients_skipped", "new_images_uploaded", "duplicate_images_skipped", "failed_files"}


def jpeg(api, url) -> np.ndarray:
    response = api.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    return np.asarray(Image.open(io.BytesIO(b"".join(response.streaming_content))))


def start(api, source, description="test import"):
    response = api.post("/api/imports/", {"source_path": str(source), "description": description}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_tree_imports_with_exact_counts_and_every_failure_named(api, tree, settings):
    settings.IMPORT_PROCESSES = 2  # the real process pool
    source, expected = tree
    body = start(api, source)
    assert set(body) == {"task_id", "status", "message", "started_at"}
    assert body["status"] == "pending" and body["task_id"].startswith("dicom-import-")
    run_job(ImportJob.objects.get(task_id=body["task_id"]))

    status = api.get(f"/api/imports/{body['task_id']}/status").json()
    assert list(status) == ["task_id", "status", "source_path", "description", "created_at", "started_at",
                            "completed_at", "duration_seconds", "progress", "errors"]  # the import service's body
    assert status["status"] == "partial"  # three files could not be imported
    assert set(status["progress"]) == SERVICE_PROGRESS_KEYS
    scanned = len(expected["imported"]) + len(expected["duplicate"]) + len(expected["failed"])
    assert status["progress"] == {
        "total_files_scanned": scanned,
        "total_patients_found": len(expected["patients"]),
        "new_patients_created": len(expected["patients"]),
        "existing_patients_skipped": 0,
        "new_images_uploaded": len(expected["imported"]),
        "duplicate_images_skipped": len(expected["duplicate"]),
        "failed_files": len(expected["failed"]),
    }
    errors = {e["file"]: e["reason"] for e in status["errors"]}
    assert set(errors) == set(expected["failed"])
    for path, reason in expected["failed"].items():
        assert reason in errors[path], (path, errors[path])
    notes = {n["file"]: n["note"] for n in api.get(f"/api/imports/{body['task_id']}/stats").json()["notes"]}
    assert set(notes) == set(expected["notes"])
    for path, words in expected["notes"].items():
        assert words in notes[path]
    assert status["source_path"] == str(source) and status["description"] == "test import"
    assert status["duration_seconds"] is not None and status["completed_at"] is not None
    assert {"created_at", "started_at"} <= set(status)

    assert ImportedImage.objects.count() == len(expected["imported"])
    # the catalog holds every imported image where it lies in the import root, for the job's owner
    job = ImportJob.objects.get(task_id=body["task_id"])
    catalogued = {row.path: row for row in Instance.objects.all()}
    assert set(catalogued) == {str(Path(p).resolve()) for p in ImportedImage.objects.values_list("source_path", flat=True)}
    assert {(r.source, r.job_app, r.job_id, r.owner_id) for r in catalogued.values()} == {
        ("imported", "imports.importjob", str(job.pk), job.created_by_id)}
    for path, row in catalogued.items():  # what the decoders read in their one pass is what the catalog reads
        assert {name: getattr(row, name) for name in read_entry(path)} == read_entry(path), path
    stored = ImportedPatient.objects.get(patient_id="P000")
    assert (stored.name, str(stored.birth_date)) == ("Doe^P0", "1970-01-01")  # not overwritten by Other^Name


def test_the_jpegs_have_the_image_size_and_polarity(api, tree):
    source, _ = tree
    run_job(ImportJob.objects.get(task_id=start(api, source)["task_id"]))
    images = {i["original_filename"]: i for i in api.get("/api/images/").json()}

    ct = jpeg(api, images["2024-01_img0.dcm"]["jpg_url"])
    assert ct.shape == (64, 96) and images["2024-01_img0.dcm"]["width"] == 96
    assert ct[:, :40].mean() < 3  # -1000 HU in the 40/400 window: black
    assert abs(ct[:, 56:].mean() - 102) < 4  # 0 HU: (0 - 39.5) / 399 + 0.5 of full scale
    mono1, mono2 = jpeg(api, images["mono1.dcm"]["jpg_url"]), jpeg(api, images["mono2.dcm"]["jpg_url"])
    assert mono2[:, :20].mean() < 5 and mono2[:, 28:].mean() > 250  # min/max window, low values dark
    assert mono1[:, :20].mean() > 250 and mono1[:, 28:].mean() < 5  # MONOCHROME1: low values bright
    red = jpeg(api, images["rgb.dcm"]["jpg_url"])
    assert red.shape == (24, 40, 3) and red[..., 0].mean() > 240 and red[..., 1:].mean() < 15

    j2k = pydicom.dcmread(get_testdata_file(REAL_J2K, download=False))  # JPEG 2000, window 600/1600
    picture = jpeg(api, images[REAL_J2K]["jpg_url"])
    assert picture.shape == (j2k.Rows, j2k.Columns) and images[REAL_J2K]["width"] == j2k.Columns
    c, w = float(j2k.WindowCenter), float(j2k.WindowWidth)
    windowed = np.clip((j2k.pixel_array - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255
    assert np.abs(picture - windowed).mean() < 3 and picture.std() > 20

    rle = pydicom.dcmread(get_testdata_file(REAL_RLE, download=False))  # RLE, PALETTE COLOR
    picture = jpeg(api, images[REAL_RLE]["jpg_url"])
    assert picture.shape == (rle.Rows, rle.Columns, 3)
    reference = apply_color_lut(rle.pixel_array, rle).astype(float)
    if reference.max() > 255:
        reference = reference / 257
    assert np.abs(picture - reference).mean() < 6 and picture.std() > 20


def test_patients_and_images_lists_filter_by_patient_id(api, tree):
    source, expected = tree
    run_job(ImportJob.objects.get(task_id=start(api, source)["task_id"]))
    patients = api.get("/api/patients/").json()
    assert {p["patient_id"] for p in patients} == expected["patients"]
    p000 = api.get("/api/patients/", {"patient_id": "P000"}).json()
    assert p000 == [{"id": p000[0]["id"], "patient_id": "P000", "name": "Doe^P0", "birth_date": "1970-01-01",
                     "sex": "F", "image_count": 5}]  # 2 months x 2 images + other_name.dcm
    images = api.get("/api/images/", {"patient_id": "P000"}).json()
    assert sorted(i["original_filename"] for i in images) == [
        "2024-01_img0.dcm", "2024-01_img1.dcm", "2024-02_img0.dcm", "2024-02_img1.dcm", "other_name.dcm"]
    assert {"id", "patient_id", "original_filename", "sop_instance_uid", "width", "height", "jpg_url"} <= set(images[0])
    assert api.get("/api/images/", {"patient_id": "NOBODY"}).json() == []
    assert api.get("/api/patients/", {"patient_id": "C001"}).json()[0]["name"] == "张^三"


def test_stats_group_failures_and_count_per_patient(api, tree):
    source, expected = tree
    task = start(api, source)["task_id"]
    run_job(ImportJob.objects.get(task_id=task))
    stats = api.get(f"/api/imports/{task}/stats").json()
    assert stats["progress"]["failed_files"] == 3
    assert sorted(f["count"] for f in stats["failures_by_reason"]) == [1, 1, 1]
    assert {f["files"][0] for f in stats["failures_by_reason"]} == set(expected["failed"])
    p000 = next(p for p in stats["patients"] if p["patient_id"] == "P000")
    assert (p000["new_images"], p000["duplicate_images"], p000["created_by_this_import"]) == (5, 1, True)
    listed = api.get("/api/imports/").json()
    assert [j["task_id"] for j in listed] == [task]
