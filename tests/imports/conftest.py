import pytest

from apps.imports.models import ImportJob
from apps.jobs.runner import run_inline
from tests.imports.tree import build_tree


@pytest.fixture
def import_root(settings, tmp_path):
    """IMPORT_ROOTS = [<tmp>/roots]; JPEGs under <tmp>/jpg; decoding in-process unless a test asks."""
    root = tmp_path / "roots"
    root.mkdir()
    settings.IMPORT_ROOTS = [root.resolve()]
    settings.IMPORT_JPG_DIR = tmp_path / "jpg"
    settings.IMPORT_PROCESSES = 1
    return root.resolve()


@pytest.fixture
def tree(import_root):
    """A generated tree under the import root and what importing it must report."""
    source = import_root / "dicom"
    return source, build_tree(source)


def run_job(job: ImportJob) -> ImportJob:
    """Run the job's items in this process, in order, the way one worker would (scan first)."""
    return run_inline(job)
