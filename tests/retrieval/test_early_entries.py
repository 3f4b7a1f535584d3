"""The catalog's values of a C-MOVE's instances read while the move runs (apps/retrieval/early_entries.py):
only complete instances of the move's own folder are read, a value is used only for the file named after
its instance, and a real C-MOVE's study is catalogued with what its files hold, mostly from those reads."""
import shutil
import time
from pathlib import Path

import pytest

from apps.catalog.models import Instance
from apps.dicom import catalog_entry
from apps.dicom.catalog_entry import read_entry
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.staging import ANSWERED
from apps.jobs import runner
from apps.retrieval import early_entries, intake
from apps.retrieval.early_entries import EarlyEntries, read_early
from apps.retrieval.models import RetrievalJob


@pytest.fixture
def generate(tmp_path):
    def make(**options):
        write_dataset(tmp_path / "gen", **{"patients": 1, "studies": 1, "series": 1, "rows": 8, "cols": 8, **options})
        return tmp_path / "gen"
    return make


def staged_copy(source: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / name)
    return folder / name


def test_only_complete_instances_directly_in_the_moves_folder_are_read_as_the_ledger_names_them(generate, tmp_path):
    files = sorted(generate(patients=1, instances=4).rglob("*.dcm"))
    sops = [read_entry(p)["sop_instance_uid"] for p in files]
    folder, entries = tmp_path / "move", {}

    def answered(*names):  # as the receiver notes what it answered for, before writing it
        with open(folder / ANSWERED, "a") as ledger:
            ledger.write("".join(f"{name}\n" for name in names))

    def read_soon(count):
        deadline = time.monotonic() + 10
        while len(entries) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    with EarlyEntries(folder, entries) as reading:  # the folder is made by the move's first instance, later
        time.sleep(2 * early_entries.POLL_SECONDS)
        staged_copy(files[0], folder, f"{sops[0]}.dcm")
        answered(f"{sops[0]}.dcm", f"foreign/other-study/{sops[1]}.dcm", f"{sops[2]}.dcm", f"{sops[3]}.dcm")
        staged_copy(files[1], folder / "foreign" / "other-study", f"{sops[1]}.dcm")  # apart: never filed
        staged_copy(files[2], folder, f".incoming-1-1-{sops[2]}.dcm.part")  # answered, still being written
        staged_copy(files[3], folder, f"{sops[3]}.dcm")
        staged_copy(files[1], folder, f"{sops[1]}.dcm")  # in the folder, never answered for: not ours to read
        read_soon(2)
        assert set(entries) == {f"{sops[0]}.dcm", f"{sops[3]}.dcm"}
        (folder / f".incoming-1-1-{sops[2]}.dcm.part").rename(folder / f"{sops[2]}.dcm")  # its write lands
        with open(folder / ANSWERED, "a") as ledger:
            ledger.write("half-a-li")  # a line still being appended is not read yet
        read_soon(3)
        reading.stop()
    assert entries == {f"{sops[i]}.dcm": read_entry(files[i]) for i in (0, 2, 3)}


def test_a_value_is_used_only_for_the_file_named_after_its_instance(generate, tmp_path):
    files = sorted(generate(patients=1, instances=2).rglob("*.dcm"))
    values = [read_entry(p) for p in files]
    entries = {f"{values[0]['sop_instance_uid']}.dcm": values[0],
               f"{values[1]['sop_instance_uid']}.dcm": values[0]}  # read under another instance's name
    filed = [tmp_path / f"{v['sop_instance_uid']}.dcm" for v in values] + [tmp_path / "1.2.3.dcm"]
    assert read_early(entries, filed) == {str(filed[0]): values[0]}


def retrieve_and_check_the_catalog(server: str, orthanc, study: dict, settings, monkeypatch) -> tuple[list, list]:
    """Retrieve `study` from `server` as a one-row job; check every filed file is catalogued with what it
    holds. Returns (the files filed, every header the catalog's reader opened meanwhile)."""
    read = []
    for opener in ("read_head", "open_regular"):  # the first look at a header, and the longer one
        real = getattr(catalog_entry, opener)
        monkeypatch.setattr(catalog_entry, opener, lambda path, *more, real=real: read.append(Path(path))
                            or real(path, *more))
    text = intake.rows_to_csv([{"StudyInstanceUID": study["StudyInstanceUID"], "Server": server}])
    job = RetrievalJob.from_case_list(intake.read_case_list(text, user=None), start=False)
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()
    read_by_the_row = list(read)
    assert job.status == "succeeded"
    filed = sorted(settings.DOWNLOADS_DIR.rglob("*.dcm"))
    assert len(filed) == len(orthanc.study_instances(study["StudyInstanceUID"])) > 2
    rows = {row.path: row for row in Instance.objects.all()}
    assert sorted(rows) == [str(p.resolve()) for p in filed]
    for path in filed:
        values = read_entry(path)
        assert {name: getattr(rows[str(path.resolve())], name) for name in values} == values
    return filed, read_by_the_row


@pytest.mark.django_db(transaction=True)
def test_a_moved_study_is_catalogued_as_its_files_are_and_no_file_is_read_twice(
        portal, orthanc, orthanc_dataset, orthanc_servers, settings, monkeypatch):
    monkeypatch.setattr(early_entries, "POLL_SECONDS", 0.001)  # a small study moves in a moment
    filed, read_by_the_row = retrieve_and_check_the_catalog("A", orthanc, orthanc_dataset["studies"][0], settings,
                                                            monkeypatch)
    # each file's header was read once: what was read during the move is what the cataloguing used
    assert sorted(path.name for path in read_by_the_row) == sorted(path.name for path in filed)
    staging, case_folder = Path(settings.STAGING_DIR).resolve(), filed[0].parent.resolve()
    assert all(staging in path.resolve().parents or path.resolve().parent == case_folder for path in read_by_the_row)


@pytest.mark.django_db(transaction=True)
def test_a_c_get_study_is_catalogued_from_the_bytes_it_received_and_only_its_first_file_is_read(
        portal, orthanc, orthanc_dataset, orthanc_servers, settings, monkeypatch):
    # A C-GET receives on the row's own thread: the catalog's values come from each instance's bytes in
    # memory, read while the PACS prepares the next one; the first instance is written before its answer
    # (it makes the folder) and is the one file the cataloguing reads after the filing.
    filed, read_by_the_row = retrieve_and_check_the_catalog("B", orthanc, orthanc_dataset["studies"][0], settings,
                                                            monkeypatch)
    assert len(read_by_the_row) == 1 and read_by_the_row[0].resolve() in {p.resolve() for p in filed}
