"""Sending a large instance (a whole-slide or tomosynthesis object is gigabytes) never reads it into
memory whole: C-STORE sends it from the file (socket.sendfile) and STOW-RS streams it, each after the
same proof that the file is complete. Measured in a separate process (its peak RSS) sending a 256 MB
instance to DCMTK's storescp and to Orthanc's DICOMweb; the receivers hold the same bytes."""
import dataclasses
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from apps.dicom import files, split, store
from apps.dicom.peers import LocalAE
from tests.fixtures_common import unused_port
from tests.pacs import port_open

pytestmark = pytest.mark.orthanc
ROOT = Path(__file__).resolve().parents[2]
FRAME = 1024 * 1024  # one 1024x1024 8-bit frame
FRAMES = 256
MULTIFRAME_SC = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte Secondary Capture
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


def write_large(path: Path, frames: int = FRAMES) -> Path:
    """A multi-frame instance of `frames` MB written frame by frame (never held in memory here either)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = MULTIFRAME_SC, generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MULTIFRAME_SC, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "LARGE01", "Large^Slide", "SM"
    ds.Rows = ds.Columns = 1024
    ds.NumberOfFrames, ds.SamplesPerPixel, ds.PhotometricInterpretation = frames, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.save_as(path, enforce_file_format=True)
    block = bytearray(os.urandom(FRAME))
    with path.open("ab") as out:
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, frames * FRAME))
        for n in range(frames):
            block[:8] = struct.pack("<Q", n)  # every frame differs
            out.write(block)
    return path


def dataset_digest(path: Path) -> str:
    info = files.read_meta(path)
    digest = hashlib.sha256()
    with path.open("rb") as source:
        source.seek(info.dataset_offset)
        while chunk := source.read(FRAME):
            digest.update(chunk)
    return digest.hexdigest()


# Sends FILE to a C-STORE peer or a DICOMweb endpoint in a fresh process and prints what landed and
# the process's peak RSS; a small file first, so the baseline includes every import and buffer.
SENDER = """
import json, resource, sys
sys.path.insert(0, {root!r})
from apps.dicom import store
from apps.dicom.peers import DicomWebEndpoint, LocalAE, RemoteAE
kind, target, small, large = sys.argv[1:5]
peer = (RemoteAE(ae_title="REF", host="127.0.0.1", port=int(target)) if kind == "dimse"
        else DicomWebEndpoint(base_url=target, name="ORTHANC", timeout=120.0))
out = {{}}
for name, path in (("small", small), ("large", large)):
    report = store.store(peer, [path], local=LocalAE(ae_title="BIGSENDER", port=0))
    out[name] = {{"landed": report.landed, "failed": report.failed,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}
print(json.dumps(out))
"""


def send_in_process(kind: str, target, small: Path, large: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", SENDER.format(root=str(ROOT)), kind, str(target), str(small),
                           str(large)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def large_and_small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("large")
    return write_large(folder / "large.dcm"), write_large(folder / "small.dcm", frames=2)


def test_c_store_of_a_256_mb_instance_keeps_the_senders_memory_flat(large_and_small, tmp_path):
    large, small = large_and_small
    out = tmp_path / "storescp"
    out.mkdir()
    port = unused_port()
    scp = subprocess.Popen(["storescp", "+B", "-aet", "REF", "-od", str(out), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = send_in_process("dimse", port, small, large)
    finally:
        scp.terminate()
        scp.wait(10)
    assert sent["large"]["landed"] == 1 and sent["large"]["failed"] == []
    growth = sent["large"]["rss"] - sent["small"]["rss"]
    assert growth < RSS_GROWTH_LIMIT, f"sending 256 MB grew the sender by {growth / 2**20:.0f} MB"
    received = {files.read_meta(p).sop_instance_uid: p for p in out.iterdir()}
    landed = received[files.read_meta(large).sop_instance_uid]
    assert dataset_digest(landed) == dataset_digest(large), "storescp holds the same dataset bytes"


def test_stow_rs_of_a_256_mb_instance_streams_it(large_and_small, empty_orthanc):
    large, small = large_and_small
    sent = send_in_process("dicomweb", empty_orthanc.dicomweb().base_url, small, large)
    assert sent["large"]["landed"] == 1 and sent["large"]["failed"] == []
    growth = sent["large"]["rss"] - sent["small"]["rss"]
    assert growth < RSS_GROWTH_LIMIT, f"STOW-RS of 256 MB grew the sender by {growth / 2**20:.0f} MB"
    uid = files.read_meta(large).sop_instance_uid
    found = empty_orthanc.rest("POST", "/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": uid}})
    stored = empty_orthanc.rest("GET", f"/instances/{found.json()[0]}/attachments/dicom/md5").text.strip('"')
    assert stored == hashlib.md5(large.read_bytes()).hexdigest(), "Orthanc holds the file byte for byte"


def test_a_large_file_cut_short_is_refused_naming_it_and_nothing_is_sent(large_and_small, tmp_path, empty_orthanc):
    large, _ = large_and_small
    cut = tmp_path / "cut.dcm"
    with large.open("rb") as source, cut.open("wb") as target:
        target.write(source.read(100 * FRAME))
    assert files.read_meta(cut).size > files.LARGE_FILE_BYTES
    for target in (empty_orthanc.peer(), empty_orthanc.dicomweb()):
        report = store.store(target, [cut], local=LocalAE(ae_title="BIGSENDER", port=0))
        assert report.landed == 0
        assert report.failed == [(str(cut), report.failed[0][1])] and "truncated" in report.failed[0][1]
    assert empty_orthanc.instances() == set()


def test_a_large_file_that_changed_since_it_was_listed_is_refused(large_and_small):
    large, _ = large_and_small
    listed = dataclasses.replace(files.read_meta(large), size=large.stat().st_size - FRAME)  # it grew since
    with pytest.raises(files.InvalidDicomFile, match="changed while it was being sent"):
        with split.open_complete(large, listed):
            pass
