"""Dedup by database constraint: a re-import opens no file and reports everything duplicate, two
concurrent imports of one tree file each patient and image once, a crashed batch re-runs cleanly."""
import shutil
import threading

import pytest
from django.db import connection

from apps.imports import batch
from apps.imports.intake import create_import
from apps.imports.models import FileOutcome, ImportedImage, ImportedPatient, ImportJob, KnownFile
from apps.imports.stats import job_stats
from apps.jobs import runner
from tests.imports.conftest import run_job

pytestmark = pytest.mark.django_db(transaction=True)


def importable(expected) -> int:
    return len(expected["imported"]) + len(expected["duplicate"])


def test_a_reimport_opens_no_file_and_reports_everything_duplicate(tree, monkeypatch):
    source, expected = tree
    first = run_job(create_import(str(source)))
    assert first.counts()["new_images_uploaded"] == len(expected["imported"])

    def must_not_open(jobs):
        assert not jobs, "a re-import of an unchanged tree opened a file"
        return iter([])

    monkeypatch.setattr(batch, "render_stream", must_not_open)  # the only place files are read
    again = run_job(create_import(str(source)))
    assert again.counts() == {
        "total_files_scanned": first.counts()["total_files_scanned"],
        "total_patients_found": len(expected["patients"]),
        "new_patients_created": 0,
        "existing_patients_skipped": len(expected["patients"]),
        "new_images_uploaded": 0,
        "duplicate_images_skipped": importable(expected),
        "failed_files": len(expected["failed"]),  # still not importable, for the same reasons
    }
    assert {e["file"]: e["reason"] for e in again.errors()} == {e["file"]: e["reason"] for e in first.errors()}
    assert ImportedImage.objects.count() == len(expected["imported"])
    # The unchanged files are counted per patient, not written one row each; failed files keep theirs.
    assert again.outcomes.count() == len(expected["patients"]) + len(expected["failed"])
    per_patient = {p["patient_id"]: (p["new_images"], p["duplicate_images"]) for p in job_stats(again)["patients"]}
    assert per_patient == {p["patient_id"]: (0, p["new_images"] + p["duplicate_images"])
                           for p in job_stats(first)["patients"]}


def test_a_changed_file_is_read_again_and_caught_by_its_keys(tree):
    source, expected = tree
    run_job(create_import(str(source)))
    touched = source / expected["imported"][0]
    touched.write_bytes(touched.read_bytes())  # same content, new mtime: the header is read again
    import os
    os.utime(touched, ns=(1, 1))
    again = run_job(create_import(str(source)))
    assert again.counts()["duplicate_images_skipped"] == importable(expected)
    assert KnownFile.objects.get(path=str(touched)).mtime_ns == 1


def test_a_renamed_copy_in_another_import_is_a_duplicate(tree):
    source, expected = tree
    run_job(create_import(str(source)))
    copy_dir = source.parent / "copies"
    copy_dir.mkdir()
    (copy_dir / "renamed.dcm").write_bytes((source / expected["imported"][0]).read_bytes())
    job = run_job(create_import(str(copy_dir)))
    assert job.counts()["duplicate_images_skipped"] == 1 and job.counts()["new_images_uploaded"] == 0


def in_step(monkeypatch, barrier, name):
    """Make both imports reach batch.<name> before either goes on: the race on the keys is certain."""
    real = getattr(batch, name)

    def step(*args, **kwargs):
        barrier.wait(timeout=30)
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, name, step)


def test_two_concurrent_imports_of_one_tree_file_everything_once(tree, monkeypatch):
    source, expected = tree
    jobs = [create_import(str(source)), create_import(str(source))]
    for job in jobs:
        run_job_items(job, kinds=["scan"])
    barrier = threading.Barrier(2)
    in_step(monkeypatch, barrier, "ensure_patients")  # both find no patient, both create
    in_step(monkeypatch, barrier, "file_images")  # both rendered every image, both insert

    def run(job):
        try:
            barrier.wait()
            for item in job.items.filter(status="pending").order_by("number"):
                runner.run_item(item._meta.label, item.pk, continue_with_job=False)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = [ImportJob.objects.get(pk=job.pk).counts() for job in jobs]
    assert ImportedImage.objects.count() == len(expected["imported"])
    assert ImportedPatient.objects.count() == len(expected["patients"])
    assert sum(c["new_images_uploaded"] for c in counts) == len(expected["imported"])
    for c in counts:
        assert c["new_images_uploaded"] + c["duplicate_images_skipped"] == importable(expected)
        assert c["failed_files"] == len(expected["failed"])
    assert sum(c["new_patients_created"] for c in counts) == len(expected["patients"])


def run_job_items(job, kinds):
    for item in job.items.filter(status="pending", kind__in=kinds):
        runner.run_item(item._meta.label, item.pk, continue_with_job=False)


def test_a_batch_rerun_after_a_crash_counts_its_own_images_once(tree, settings):
    settings.IMPORT_BATCH_SIZE = 5
    source, expected = tree
    job = run_job(create_import(str(source)))
    before = job.counts()
    crashed = job.items.filter(kind="files").order_by("number").first()
    # The worker died after filing the images: no outcomes, no known files, one JPEG lost.
    FileOutcome.objects.filter(item=crashed).delete()
    KnownFile.objects.filter(path__in=crashed.files).delete()
    lost = ImportedImage.objects.filter(item=crashed).first()
    lost.jpg_path().unlink()
    type(crashed).objects.filter(pk=crashed.pk).update(status="pending")
    runner.run_item(crashed._meta.label, crashed.pk, continue_with_job=False)
    job.refresh_from_db()
    assert job.counts() == before
    assert lost.jpg_path().exists()
    assert ImportedImage.objects.count() == len(expected["imported"])


def test_every_filed_image_has_its_jpeg_and_no_temporary_jpeg_is_left(tree, settings):
    """place_jpegs moves each owned image's JPEG and file_group removes every other temporary one (of a
    duplicate, of a failed file); JPEG folders emptied by hand after this process made them are made again."""
    settings.IMPORT_PROCESSES = 2  # the decoder pool's way, as an inline import runs
    source, expected = tree

    def check(job):
        assert job.counts()["duplicate_images_skipped"] == len(expected["duplicate"]) > 0
        assert job.counts()["failed_files"] == len(expected["failed"]) > 0
        images = list(ImportedImage.objects.all())
        assert len(images) == len(expected["imported"])
        assert all(image.jpg_path().stat().st_size > 0 for image in images)
        assert list(batch.incoming_dir().iterdir()) == []
        return images

    images = check(run_job(create_import(str(source))))
    for folder in {image.jpg_path().parent for image in images}:
        shutil.rmtree(folder)  # as the benchmark's rounds start: this process still remembers them as made
    ImportedImage.objects.all().delete()
    KnownFile.objects.all().delete()
    check(run_job(create_import(str(source))))
