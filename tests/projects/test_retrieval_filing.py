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
