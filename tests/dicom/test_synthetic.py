"""apps.dicom.demo.synthetic: deterministic, valid, readable synthetic studies with a truthful manifest."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from apps.dicom.demo.synthetic import write_dataset

SMALL = dict(patients=2, studies=2, series=2, instances=3, rows=32, cols=40)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(tmp_path):
    first = write_dataset(tmp_path / "a", **SMALL)
    second = write_dataset(tmp_path / "b", **SMALL)
    assert first == second
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_another_seed_gives_other_uids(tmp_path):
    first = write_dataset(tmp_path / "a", **SMALL, seed=1)
    second = write_dataset(tmp_path / "b", **SMALL, seed=2)
    assert {s["StudyInstanceUID"] for s in first["studies"]}.isdisjoint(
        s["StudyInstanceUID"] for s in second["studies"])


def test_manifest_counts_match_the_files_written(tmp_path):
    manifest = write_dataset(tmp_path, **SMALL, id_prefix="ZZ")
    files = sorted(tmp_path.rglob("*.dcm"))
    assert manifest["files"] == len(files) == 2 * 2 * 2 * 3
    assert manifest["bytes"] == sum(f.stat().st_size for f in files)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert [s["PatientID"] for s in manifest["studies"]] == ["ZZ00001", "ZZ00001", "ZZ00002", "ZZ00002"]
    assert [s["Modality"] for s in manifest["studies"]] == ["CT", "MR", "US", "CT"]
    assert all(len(s["Series"]) == 2 and all(r["Instances"] == 3 for r in s["Series"])
               for s in manifest["studies"])
    assert (tmp_path / "ZZ00002" / "Study002" / "Series002" / "IMG00003.dcm").is_file()


def test_series_of_unequal_size_are_written_as_asked(tmp_path):
    manifest = write_dataset(tmp_path, patients=1, studies=1, instances=[1, 4, 2], rows=8, cols=8, modalities=("CT",))
    series = manifest["studies"][0]["Series"]
    assert [r["Instances"] for r in series] == [1, 4, 2] and manifest["files"] == 7
    folders = sorted((tmp_path / "PAT00001" / "Study001").iterdir())
    assert [len(list(folder.glob("*.dcm"))) for folder in folders] == [1, 4, 2]
    read = [pydicom.dcmread(path) for path in sorted(folders[1].glob("*.dcm"))]
    assert {str(ds.SeriesInstanceUID) for ds in read} == {series[1]["SeriesInstanceUID"]}


def test_files_are_valid_part10_with_pixels_matching_the_manifest(tmp_path):
    manifest = write_dataset(tmp_path, **SMALL)
    by_study = {s["StudyInstanceUID"]: s for s in manifest["studies"]}
    expected = {"CT": ((32, 40), np.int16), "MR": ((32, 40), np.uint16), "US": ((32, 40, 3), np.uint8)}
    sop_uids = set()
    for path in tmp_path.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        study = by_study[ds.StudyInstanceUID]
        assert (ds.PatientID, str(ds.PatientName), ds.StudyDate, ds.AccessionNumber, ds.Modality) == (
            study["PatientID"], study["PatientName"], study["StudyDate"], study["AccessionNumber"],
            study["Modality"])
        assert ds.SeriesInstanceUID in {r["SeriesInstanceUID"] for r in study["Series"]}
        shape, dtype = expected[ds.Modality]
        arr = ds.pixel_array
        assert arr.shape == shape and arr.dtype == dtype
        assert arr.std() > 0  # real content, not a blank frame
        sop_uids.add(ds.SOPInstanceUID)
    assert len(sop_uids) == manifest["files"]


def test_ct_pixels_are_hounsfield_shaped(tmp_path):
    write_dataset(tmp_path, patients=1, instances=1, rows=64, cols=64, modalities=("CT",))
    ds = pydicom.dcmread(next(tmp_path.rglob("*.dcm")))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu[0, 0] < -900  # air in the corner
    assert -100 < hu[32, 10] < 200  # soft tissue inside the body ellipse


def test_first_date_dates_studies_consecutively(tmp_path):
    manifest = write_dataset(tmp_path, patients=2, studies=2, instances=1, first_date="2024-02-28")
    assert [s["StudyDate"] for s in manifest["studies"]] == ["20240228", "20240229", "20240301", "20240302"]


def test_unknown_modality_is_refused(tmp_path):
    with pytest.raises(ValueError, match="modalities"):
        write_dataset(tmp_path, modalities=("CT", "XA"))


def test_command_line_writes_the_same_dataset(tmp_path):
    subprocess.run([sys.executable, "-m", "apps.dicom.demo.synthetic", "--patients", "1", "--studies", "2",
                    "--instances", "2", "--rows", "16", "--cols", "16", "--modalities", "MR,US",
                    "--seed", "7", "--out", str(tmp_path / "cli")],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2])
    write_dataset(tmp_path / "lib", patients=1, studies=2, instances=2, rows=16, cols=16,
                  modalities=("MR", "US"), seed=7)
    assert _tree(tmp_path / "cli") == _tree(tmp_path / "lib")
