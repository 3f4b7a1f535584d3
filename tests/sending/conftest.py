"""Send and inbox tests: an import root in a temp folder, Orthanc (SPARE, emptied) as the destination,
and items run in this process by the one runner (the worker cluster has its own tests here)."""
import shutil
from pathlib import Path

import pytest

from apps.dicom.demo.synthetic import write_dataset
from apps.jobs import runner
from apps.jobs.models import ItemStatus
from apps.servers.models import DicomServer


@pytest.fixture
def root(settings, tmp_path) -> Path:
    """The one IMPORT_ROOT; DATA_DIR (work copies, uploads) lies outside it."""
    folder = tmp_path / "root"
    folder.mkdir()
    settings.IMPORT_ROOTS = [folder.resolve()]
    settings.DATA_DIR = tmp_path / "data"
    return folder


@pytest.fixture
def pacs(db, empty_orthanc) -> DicomServer:
    peer = empty_orthanc.peer()
    return DicomServer.objects.create(name="PACS", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                      retries=0, max_associations=2)


def study_tree(folder: Path, *, patients=2, instances=3, seed=5, prefix="SRC") -> dict:
    """Nested folders patient/study/series/*.dcm (write_dataset's layout), without its manifest file."""
    manifest = write_dataset(folder, patients=patients, studies=1, series=2, instances=instances, seed=seed,
                             id_prefix=prefix)
    (folder / "manifest.json").unlink()
    return manifest


def sop_uids(manifest_folder: Path) -> set[str]:
    import pydicom

    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in manifest_folder.rglob("*.dcm")}


def run_items(job) -> None:
    """Run every pending item of the job here, as a worker would."""
    for item in job.items.filter(status=ItemStatus.PENDING):
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
