"""C-STORE of files and folders into a real Orthanc: compressed files go as they are, bad files are
named with their problem and do not stop the others."""
import shutil

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from apps.dicom import files, store
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import ConnectionFailed, InvalidDicomFile
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.scu import store_association
from apps.dicom.wire.storage_scp import LeanStorageSCP
from tests.fixtures_common import unused_port

LOCAL = LocalAE(ae_title="SENDER", port=0)
# Real files in four compressed syntaxes: pydicom's wheel (JPEG2000, MR_small_RLE) and pydicom-data.
REAL_FILES = ("JPEG2000.dcm", "US1_J2KR.dcm", "MR_small_RLE.dcm", "emri_small_RLE.dcm")


def real_file(name):
    path = get_testdata_file(name, download=False)
    assert path, f"{name} must be available offline (pydicom / pydicom-data)"
    return path


@pytest.fixture
def mixed_folder(tmp_path):
    """Synthetic CT/MR/US files, real compressed files, a non-DICOM file and a truncated one."""
    folder = tmp_path / "to-send"
    manifest = write_dataset(folder / "synthetic", patients=2, studies=1, instances=4, seed=11, id_prefix="STO")
    (folder / "synthetic" / "manifest.json").unlink()
    for name in REAL_FILES:
        shutil.copy(real_file(name), folder / name)
    (folder / "notes.txt").write_text("not an image")
    data = (folder / "synthetic").rglob("*.dcm").__next__().read_bytes()
    (folder / "cut.dcm").write_bytes(data[: len(data) // 2])
    return folder, manifest


def file_uid(path):
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def test_a_folder_lands_in_orthanc_and_bad_files_are_named(empty_orthanc, mixed_folder):
    folder, manifest = mixed_folder
    progress = []
    report = store.store_files(empty_orthanc.peer(), LOCAL, [folder], on_progress=lambda d, t: progress.append((d, t)))
    good = [p for p in folder.rglob("*.dcm") if p.name != "cut.dcm"]
    assert len(good) == manifest["files"] + len(REAL_FILES)
    assert {o.sop_instance_uid for o in report.stored} == {file_uid(p) for p in good}
    assert report.warnings == [] and report.landed == len(good)
    assert empty_orthanc.instances() == {file_uid(p) for p in good}
    failed = dict(report.failed)
    assert set(failed) == {str(folder / "notes.txt"), str(folder / "cut.dcm")}
    assert "not a DICOM file" in failed[str(folder / "notes.txt")]
    assert "truncated" in failed[str(folder / "cut.dcm")]
    assert progress[-1] == (len(good) + 2, len(good) + 2) and len(progress) == len(good) + 2


def test_compressed_files_are_stored_in_their_own_transfer_syntax(empty_orthanc):
    paths = [real_file(name) for name in REAL_FILES]
    report = store.store_files(empty_orthanc.peer(), LOCAL, paths)
    assert report.failed == [] and len(report.stored) == len(paths)
    for path in paths:
        uid = file_uid(path)
        orthanc_id = empty_orthanc.rest("POST", "/tools/lookup", content=uid).json()[0]["ID"]
        stored_syntax = empty_orthanc.rest("GET", f"/instances/{orthanc_id}/metadata/TransferSyntax").text
        assert stored_syntax == files.read_meta(path).transfer_syntax_uid, path
        assert stored_syntax != ExplicitVRLittleEndian


def test_one_association_stores_files_and_says_which_it_could_not(empty_orthanc, tmp_path):
    write_dataset(tmp_path, patients=1, studies=1, instances=3, modalities=("CT",), seed=3, id_prefix="ONE")
    paths = sorted(tmp_path.rglob("*.dcm"))
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(paths[2].read_bytes()[:-50])
    rle = real_file("MR_small_RLE.dcm")
    with store_association(empty_orthanc.peer(), LOCAL, [(CTImageStorage, ExplicitVRLittleEndian)]) as assoc:
        outcomes = [assoc.store_file(paths[0], files.read_meta(paths[0])), assoc.store_file(paths[1], files.read_meta(paths[1]))]
        not_offered = assoc.store_file(rle, files.read_meta(rle))
        with pytest.raises(InvalidDicomFile, match="truncated"):
            assoc.store_file(truncated, files.read_meta(truncated))
        outcomes.append(assoc.store_file(paths[2], files.read_meta(paths[2])))  # the association still serves
    assert [(o.ok, o.status, o.warning) for o in outcomes] == [(True, 0x0000, False)] * 3
    assert [o.path for o in outcomes] == [str(p) for p in paths]
    assert not not_offered.ok and not_offered.status is None and "does not accept" in not_offered.message
    assert empty_orthanc.instances() == {file_uid(p) for p in paths}


def test_more_than_128_kinds_of_object_take_several_associations(tmp_path):
    """130 (SOP class, transfer syntax) pairs exceed one association's 128 presentation contexts."""
    from pynetdicom import AllStoragePresentationContexts

    sop_classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts][:130]
    for n, sop_class in enumerate(sop_classes):
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID = sop_class, generate_uid(), "MANY"
        ds.add_new(0x7FE00010, "OB", b"\0\0")  # an image needs its pixel data to count as complete
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
        ds.save_as(tmp_path / f"{n:03d}.dcm", enforce_file_format=True)
    received = []
    with LeanStorageSCP(LocalAE(ae_title="MANYKINDS", port=0), lambda i: received.append(i.sop_class_uid) or 0) as scp:
        peer = RemoteAE(ae_title="MANYKINDS", host="127.0.0.1", port=scp.port)
        report = store.store_files(peer, LOCAL, [tmp_path])
    assert report.failed == [] and len(report.stored) == 130
    assert sorted(received) == sorted(sop_classes)


def test_a_warning_status_is_kept_apart_from_clean_successes(tmp_path):
    write_dataset(tmp_path, patients=1, studies=1, instances=2, modalities=("MR",), seed=5, id_prefix="WRN")
    answers = iter([0x0000, 0xB000])
    with LeanStorageSCP(LocalAE(ae_title="WARNS", port=0), lambda i: next(answers)) as scp:
        report = store.store_files(RemoteAE(ae_title="WARNS", host="127.0.0.1", port=scp.port), LOCAL,
                                   sorted(tmp_path.rglob("*.dcm")))
    assert len(report.stored) == 1 and len(report.warnings) == 1 and report.failed == []
    assert report.warnings[0].status == 0xB000 and report.warnings[0].ok and "Coercion" in report.warnings[0].message


def test_a_failure_status_fails_that_file_only(tmp_path):
    write_dataset(tmp_path, patients=1, studies=1, instances=3, modalities=("MR",), seed=6, id_prefix="FLR")
    paths = sorted(tmp_path.rglob("*.dcm"))
    answers = iter([0x0000, 0xA700, 0x0000])
    with LeanStorageSCP(LocalAE(ae_title="FULL", port=0), lambda i: next(answers)) as scp:
        report = store.store_files(RemoteAE(ae_title="FULL", host="127.0.0.1", port=scp.port), LOCAL, paths)
    assert len(report.stored) == 2 and [p for p, _ in report.failed] == [str(paths[1])]
    assert "0xA700" in report.failed[0][1] and "out of resources" in report.failed[0][1].lower()


def test_an_unreachable_pacs_raises_with_the_report_so_far(tmp_path):
    write_dataset(tmp_path, patients=1, studies=1, instances=1, modalities=("CT",), seed=8)
    (tmp_path / "junk.bin").write_bytes(b"\0" * 10)
    peer = RemoteAE(ae_title="GONE", host="127.0.0.1", port=unused_port())
    with pytest.raises(ConnectionFailed) as caught:
        store.store_files(peer, LOCAL, [tmp_path])
    assert [p for p, _ in caught.value.report.failed] == [str(tmp_path / "junk.bin"), str(tmp_path / "manifest.json")]


def test_store_refuses_a_jpeg_file_without_a_jpeg_context_rather_than_decoding_it(empty_orthanc):
    path = real_file("SC_rgb_jpeg_dcmtk.dcm")
    assert files.read_meta(path).transfer_syntax_uid == JPEGBaseline8Bit
    with store_association(empty_orthanc.peer(), LOCAL, [(files.read_meta(path).sop_class_uid, ExplicitVRLittleEndian),
                                                         (MRImageStorage, ExplicitVRLittleEndian)]) as assoc:
        outcome = assoc.store_file(path, files.read_meta(path))
    assert not outcome.ok and "JPEG Baseline" in outcome.message
    assert empty_orthanc.instances() == set()
