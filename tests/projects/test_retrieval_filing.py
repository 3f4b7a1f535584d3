"""Retrieval's filing for a project (apps/retrieval/deidentified.py): staged instances filed de-identified
once, under <SERVER>/<shifted date>_<pseudonym>_<modality>/<new SOP UID>.dcm; held-back ones listed with
their reason under the project's UID; a failing write takes back what it wrote."""
from __future__ import annotations

import pytest

from apps.projects.models import Project
from apps.retrieval.deidentified import DeidentifiedFilingFailed, file_deidentified
from tests.projects.planted import PATIENT_ID, as_file, leaks, planted_dataset, read, retrieval_layout

pytestmark = pytest.mark.django_db
SC = "1.2.840.10008.5.1.4.1.1.7"


def staged(folder, charset="ISO_IR 192", n=3, sc=True):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        uid = f"1.2.826.0.1.3680043.8.498.7730{i}"
        (folder / f"{uid}.dcm").write_bytes(as_file(planted_dataset(charset, sop_uid=uid)))
        paths.append(folder / f"{uid}.dcm")
    if sc:
        uid = "1.2.826.0.1.3680043.8.498.77399"
        (folder / f"{uid}.dcm").write_bytes(as_file(planted_dataset(charset, sop_uid=uid, sop_class=SC)))
        paths.append(folder / f"{uid}.dcm")
    return paths


def test_staged_instances_are_filed_deidentified_under_the_pseudonymized_layout(tmp_path):
    project = Project.objects.create(name="TRIAL1")
    filed = file_deidentified(project.pseudonymizer(), staged(tmp_path / "staging"),
                              retrieval_layout(tmp_path / "downloads", "LK"))
    pseudonym = project.patient(PATIENT_ID).pseudonym
    assert filed.count == 3 and filed.pseudonym == pseudonym
    assert filed.folders == [tmp_path / "downloads" / "LK" / f"NODATE_{pseudonym}_CT"]
    files = sorted(filed.folders[0].iterdir())
    recipe = project.recipe()
    assert [f.name for f in files] == sorted(f"{recipe.uid(f'1.2.826.0.1.3680043.8.498.7730{i}')}.dcm"
                                             for i in range(3))
    assert filed.bytes == sum(f.stat().st_size for f in files)
    for f in files:
        data = f.read_bytes()
        assert leaks(data, "ISO_IR 192") == [] and read(data).PatientID == pseudonym
    assert filed.not_filed == [(recipe.uid("1.2.826.0.1.3680043.8.498.77399"),
                                filed.not_filed[0][1])] and filed.not_filed[0][1].startswith("held back")


def test_with_the_dates_option_the_folder_carries_the_shifted_date(tmp_path):
    project = Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"])
    filed = file_deidentified(project.pseudonymizer(), staged(tmp_path / "s", "ISO 2022 IR 149", sc=False),
                              retrieval_layout(tmp_path / "d", "LK"))
    patient = project.patient(PATIENT_ID)
    import datetime as dt
    shifted = (dt.date(2020, 3, 1) + dt.timedelta(days=patient.date_shift_days)).strftime("%Y%m%d")
    assert [f.name for f in filed.folders] == [f"{shifted}_{patient.pseudonym}_CT"]


def test_a_failing_write_takes_back_what_it_wrote(tmp_path):
    project = Project.objects.create(name="TRIAL1")
    paths = staged(tmp_path / "s", sc=False)
    downloads = tmp_path / "d"
    calls = []

    def folder_of(result):
        calls.append(result)
        folder = downloads / f"f{len(calls)}"
        if len(calls) == 3:  # the third instance's folder cannot be made: a file has its name
            downloads.mkdir(parents=True, exist_ok=True)
            folder.write_bytes(b"")
        return folder
    with pytest.raises(DeidentifiedFilingFailed) as failure:
        file_deidentified(project.pseudonymizer(), paths, folder_of)
    assert failure.value.removed == 2 and "exists" in failure.value.reason
    assert [p.name for p in downloads.rglob("*") if p.is_file()] == ["f3"]


def test_instances_are_deidentified_while_the_move_still_runs_and_filed_after_the_check(tmp_path):
    """The early thread takes each instance as it lands (the row's thread is waiting on the PACS); filing
    moves its results into place and de-identifies what it had not reached: the same files as filing alone."""
    import threading
    import time

    from apps.retrieval.deidentified import EarlyDeidentifier

    project = Project.objects.create(name="TRIAL1")
    sources = staged(tmp_path / "made", sc=False, n=4)
    folder = tmp_path / "staging"
    folder.mkdir()
    landed = threading.Event()

    def listing():
        found = sorted(folder.glob("*.dcm"))
        if len(found) >= 2:
            landed.set()
        return found
    early = EarlyDeidentifier(project.pseudonymizer(), listing, tmp_path / "scratch", known=[PATIENT_ID])
    with early:
        for source in sources[:2]:
            source.rename(folder / source.name)
        assert landed.wait(5)
        deadline = time.monotonic() + 10
        while len(early._done) < 2 and time.monotonic() < deadline:  # the thread's own pace
            landed.wait(0.01)
        assert len(early._done) == 2
        for source in sources[2:]:  # the last ones land as the move ends: the row does them
            source.rename(folder / source.name)
        filed = early.file(sorted(folder.glob("*.dcm")), retrieval_layout(tmp_path / "downloads", "LK"))
    assert filed.count == 4 and len(filed.folders) == 1
    assert not (tmp_path / "scratch").exists()
    alone = file_deidentified(project.pseudonymizer(), sorted(folder.glob("*.dcm")),
                              retrieval_layout(tmp_path / "again", "LK"))
    assert sorted((p.name, p.read_bytes()) for p in filed.folders[0].iterdir()) == sorted(
        (p.name, p.read_bytes()) for p in alone.folders[0].iterdir())
    for p in filed.folders[0].iterdir():
        assert leaks(p.read_bytes(), "ISO_IR 192") == []


def test_the_early_thread_leaves_an_unknown_patient_to_the_row(tmp_path):
    from apps.retrieval.deidentified import EarlyDeidentifier

    project = Project.objects.create(name="TRIAL1")
    folder = tmp_path / "staging"
    paths = staged(folder, sc=False, n=2)
    with EarlyDeidentifier(project.pseudonymizer(), lambda: paths, tmp_path / "scratch") as early:
        early.stop()
        assert early._done == {}  # nobody looked the patient up: the thread touches no database
        filed = early.file(paths, retrieval_layout(tmp_path / "downloads", "LK"))
    assert filed.count == 2 and filed.pseudonym == project.patient(PATIENT_ID).pseudonym
