"""An import started through the API runs on a real django-q2 cluster (two worker processes, which
decode in themselves: daemonic workers may not start a pool) and ends with the same counts."""
import pytest

from apps.imports.models import ImportedImage, ImportJob
from tests.jobs.cluster import QCluster, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_api_import_runs_on_the_worker_cluster(api, tree, settings, tmp_path, broker):
    source, expected = tree
    env = {"IMPORT_ROOTS": str(settings.IMPORT_ROOTS[0]), "IMPORT_JPG_DIR": str(settings.IMPORT_JPG_DIR),
           "IMPORT_BATCH_SIZE": 6, "Q_WORKERS": 2}
    cluster = QCluster(tmp_path / "cluster.log", **env)
    try:
        task = api.post("/api/imports/", {"source_path": str(source)}, format="json").json()["task_id"]
        job = wait_for(lambda: ImportJob.objects.filter(task_id=task, status__in=["succeeded", "partial", "failed"])
                       .first(), 90, "the import to finish on the cluster")
    finally:
        cluster.stop()
    assert job.status == "partial", cluster.output()[-3000:]
    progress = api.get(f"/api/imports/{task}/status").json()["progress"]
    assert progress["new_images_uploaded"] == len(expected["imported"]) == ImportedImage.objects.count()
    assert progress["duplicate_images_skipped"] == len(expected["duplicate"])
    assert progress["failed_files"] == len(expected["failed"])
    batches = job.items.filter(kind="files")
    assert batches.count() == 4 and all(b.status == "succeeded" and b.worker for b in batches)
    for image in ImportedImage.objects.all():
        assert image.jpg_path().stat().st_size > 0
