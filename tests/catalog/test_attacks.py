"""The catalog under attack from the disk: a path that climbs out of the data folders, a link inside
downloads pointing at files elsewhere (one file, or a whole case folder), a FIFO named like an instance,
a file that is no DICOM or is cut short, and a name with control characters. None of them becomes a row,
neither when filed nor in `catalog rebuild`; nothing blocks; the rest is catalogued; no patient
identifier reaches the log above DEBUG."""
import logging
import os
import shutil

import pytest

from apps.catalog.filing import catalog_files, catalog_folder
from apps.catalog.models import Instance
from apps.catalog.rebuild import rebuild
from tests.catalog.conftest import file_like_retrieval

pytestmark = pytest.mark.django_db


@pytest.fixture
def filed(template, settings, tmp_path, user):
    """Six retrieved files under DOWNLOADS_DIR, catalogued; and a DICOM file outside every data folder."""
    settings.DOWNLOADS_DIR, settings.PHOTOS_DIR, settings.IMPORT_ROOTS = (tmp_path / "downloads",
                                                                          tmp_path / "photos", [])
    file_like_retrieval(template, settings.DOWNLOADS_DIR, user)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(template, outside / "secret.dcm")
    return settings.DOWNLOADS_DIR, outside / "secret.dcm"


def case_folder(downloads):
    return next(p for p in downloads.rglob("*") if p.is_dir() and any(p.glob("*.dcm")))


def test_paths_out_of_the_data_folders_never_become_rows(filed):
    downloads, secret = filed
    before = Instance.objects.count()
    climbing = downloads / "LK" / ".." / ".." / "elsewhere" / "secret.dcm"
    link = case_folder(downloads) / "linked.dcm"
    link.symlink_to(secret)
    assert catalog_files([secret, climbing, link, "relative/secret.dcm"], source="retrieved") == 0
    assert Instance.objects.count() == before
    assert not Instance.objects.filter(path__contains="elsewhere").exists()


def test_a_fifo_named_like_an_instance_is_skipped_without_blocking(filed):
    downloads, _ = filed
    folder = case_folder(downloads)
    os.mkfifo(folder / "waiting.dcm")
    before = Instance.objects.count()
    assert catalog_files([folder / "waiting.dcm"], source="retrieved") == 0  # opening it would block
    assert catalog_folder(folder, source="retrieved") == len(list(folder.glob("*.dcm"))) - 1
    assert Instance.objects.count() == before
    assert rebuild().written == before


def test_rebuild_skips_hostile_files_and_names_each_and_keeps_the_rest(filed, caplog):
    downloads, secret = filed
    before = Instance.objects.count()
    folder = case_folder(downloads)
    (folder / "notes.dcm").write_bytes(b"not a DICOM file at all")
    good = next(folder.glob("1*.dcm"))
    (folder / "cut.dcm").write_bytes(good.read_bytes()[:200])
    (folder / "bad\nname.dcm").write_bytes(good.read_bytes())
    (folder / "linked.dcm").symlink_to(secret)
    outside_case = secret.parent / "case"
    outside_case.mkdir()
    shutil.copy(secret, outside_case / "other.dcm")
    (downloads / "LK" / "20240101_LINKED_CT").symlink_to(outside_case, target_is_directory=True)
    with caplog.at_level(logging.INFO):
        outcome = rebuild()
    assert outcome.written == before, "every honest file is catalogued again, nothing else"
    assert not Instance.objects.filter(path__contains="elsewhere").exists()
    assert not Instance.objects.filter(path__contains="\n").exists()
    named = "\n".join(outcome.skipped)
    assert "notes.dcm" in named and "cut.dcm" in named
    patient_ids = set(Instance.objects.values_list("patient_id", flat=True))
    assert patient_ids and not any(pid in caplog.text for pid in patient_ids)
