"""The Django side of de-identification: a project's files, its layout values, and two worker processes
racing over one new patient and one study."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from apps.dicom import deidentify as d
from apps.projects.models import Project, Pseudonym
from tests.projects import planted
from tests.projects.planted import retrieval_layout

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_a_file_from_bytes_or_a_path_lands_under_its_pseudonymized_layout(tmp_path):
    project = planted.shift_safe(Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"]))
    data = planted.as_file(planted.planted_dataset("ISO_IR 192"))
    source = tmp_path / "in.dcm"
    source.write_bytes(data)
    from_bytes, from_path = project.deidentify_file(data), project.deidentify_file(source)
    assert from_bytes == from_path
    row = Pseudonym.objects.get(project=project)
    assert (row.patient_id, row.pseudonym) == (planted.PATIENT_ID, from_bytes.patient_id)
    assert from_bytes.sop_instance_uid == d.new_uid(bytes.fromhex(project.secret), "1.2.826.0.1.3680043.8.498.77003")
    path, result = project.pseudonymizer().write(data, retrieval_layout(tmp_path / "downloads", "LK"))
    shifted = result.study_date
    assert shifted and shifted != "20200301"
    assert path == tmp_path / "downloads" / "LK" / f"{shifted}_{row.pseudonym}_CT" / f"{result.sop_instance_uid}.dcm"
    assert path.read_bytes() == from_bytes.data and planted.leaks(path.read_bytes(), "ISO_IR 192") == []
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing half-written left beside it


def test_a_fifo_or_a_folder_is_refused_without_blocking(tmp_path):
    project = Project.objects.create(name="P")
    fifo = tmp_path / "fifo.dcm"
    os.mkfifo(fifo)
    with pytest.raises(d.CannotDeidentify, match="not a regular file"):
        project.deidentify_file(fifo)
    with pytest.raises(d.CannotDeidentify):
        project.deidentify_file(tmp_path)


def test_burned_in_instances_are_held_back_unless_the_project_allows_them():
    data = planted.as_file(planted.planted_dataset(burned_in="YES"))
    with pytest.raises(d.HeldBack, match="Burned In Annotation"):
        Project.objects.create(name="STRICT").deidentify_file(data)
    assert Project.objects.create(name="LAX", allow_burned_in=True).deidentify_file(data).sop_instance_uid


WORKER = """
import hashlib, json, sys, django
django.setup()
from apps.projects.models import Project
project = Project.objects.get(name=sys.argv[1])
out = []
for path in sys.argv[2:]:
    result = project.deidentify_file(path)
    out.append([result.patient_id, result.sop_instance_uid, result.study_instance_uid,
                hashlib.sha256(result.data).hexdigest()])
print(json.dumps(out))
"""


@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_give_the_same_pseudonyms_uids_and_bytes(tmp_path):
    project = Project.objects.create(name="MULTI", options=["retain-longitudinal-dates"])
    other = Project.objects.create(name="OTHER", options=["retain-longitudinal-dates"])
    files = []
    for k in range(3):
        path = tmp_path / f"{k}.dcm"
        path.write_bytes(planted.as_file(planted.planted_dataset(sop_uid=f"1.2.826.0.1.3680043.8.498.88{k}")))
        files.append(str(path))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
           "DJANGO_SETTINGS_MODULE": "pacsportal.settings", "PYTHONPATH": str(ROOT)}
    env.setdefault("DEBUG", "1")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, name, *files], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("MULTI", "MULTI", "OTHER")]
    answers = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        answers.append(json.loads(out))
    first, second, third = answers
    assert first == second  # same pseudonym, UIDs and bytes from two processes
    assert len({row[2] for row in first}) == 1 and len({row[1] for row in first}) == 3  # one study, 3 instances
    assert {row[0] for row in third}.isdisjoint(row[0] for row in first)
    assert {row[1] for row in third}.isdisjoint(row[1] for row in first)
    assert Pseudonym.objects.filter(project=project).count() == 1
    assert Pseudonym.objects.filter(project=other).count() == 1
    again = project.deidentify_file(files[0])  # and a later job in this process lines up with them
    assert [again.patient_id, again.sop_instance_uid, again.study_instance_uid,
            hashlib.sha256(again.data).hexdigest()] == first[0]


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])  # byte walk, pydicom's path
def test_a_held_back_instance_leaves_no_patient_in_the_map(syntax):
    from pydicom.uid import UID

    project = Project.objects.create(name="HELD")
    data = planted.as_file(planted.planted_dataset(burned_in="YES"), UID(syntax))
    with pytest.raises(d.HeldBack):
        project.deidentify_file(data)
    assert not Pseudonym.objects.filter(project=project).exists()
