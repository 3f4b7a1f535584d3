"""A research project's retrieval de-identifies each instance once, as the receiver (C-MOVE) or the C-GET
writes it into staging (apps/dicom/deid_form.py): filing is then a rename. Proven by taking the filing
side's de-identification away: the study is still filed de-identified, held-back instances are still listed
with their reason, and a streamed huge instance has its header de-identified and its pixels unchanged."""
from __future__ import annotations

import pydicom
import pytest

from apps.dicom import files
from apps.dicom.demo.huge import write_huge_instance
from apps.dicom.wire import messages
from apps.projects.models import Project
from apps.projects.pseudonymize import Pseudonymizer
from apps.retrieval import deidentified
from tests.projects import test_retrieval_orthanc as base
from tests.projects.planted import PATIENT_ID, STUDY_UID, shift_safe
from tests.projects.test_retrieval_orthanc import OTHER_STUDY, no_leak, retrieve

portal, planted_pacs, researcher = base.portal, base.planted_pacs, base.researcher  # their fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def filing_only_renames(monkeypatch):
    """The retrieval's own de-identification (at filing, or by its early thread) fails the test if used."""
    class Refuse:
        def __getattr__(self, name):
            import apps.dicom.deidentify as real

            if name == "deidentify_bytes":
                raise AssertionError("filing de-identified an instance the receiver should have")
            return getattr(real, name)

    monkeypatch.setattr(deidentified, "deidentify", Refuse())
    monkeypatch.setattr(Pseudonymizer, "file", lambda self, source: (_ for _ in ()).throw(
        AssertionError("filing de-identified an instance the receiver should have")))


@pytest.mark.parametrize("server", ["A", "B"])  # C-MOVE into the receiver, C-GET
def test_staged_instances_are_deidentified_so_filing_is_a_rename(portal, planted_pacs, researcher, settings,
                                                                 filing_only_renames, server):
    project = shift_safe(Project.objects.create(name="TRIAL1", options=["retain-longitudinal-dates"]))
    job = retrieve(researcher, [{"StudyInstanceUID": STUDY_UID, "Server": server, "Modality": "CT"}])
    assert job.status == "succeeded", job.items.get().error
    recipe, patient = project.recipe(), project.patient(PATIENT_ID)
    filed = sorted(settings.DOWNLOADS_DIR.rglob("*.dcm"))
    assert sorted(p.name for p in filed) == sorted(
        f"{recipe.uid(f'1.2.826.0.1.3680043.8.498.7760{n}')}.dcm" for n in range(3))
    for path in filed:
        no_leak(path.read_bytes())
        ds = pydicom.dcmread(path)
        assert ds.PatientID == patient.pseudonym and ds.StudyInstanceUID == recipe.uid(STUDY_UID)
        assert ds.PatientIdentityRemoved == "YES"
    assert job.items.get().instances == 3


def test_held_back_instances_staged_by_the_receiver_are_listed_with_their_reason(portal, planted_pacs, researcher,
                                                                                 settings, filing_only_renames):
    project = Project.objects.create(name="TRIAL1")
    job = retrieve(researcher, [{"StudyInstanceUID": OTHER_STUDY, "Server": "A"}])
    item = job.items.get()
    assert item.status == "failed" and "held back" in item.error and "secondary capture" in item.error.lower()
    recipe = project.recipe()
    assert [p.name for p in settings.DOWNLOADS_DIR.rglob("*.dcm")] == [
        f"{recipe.uid('1.2.826.0.1.3680043.8.498.77800')}.dcm"]
    assert "1 instances not filed for the research project" in item.error and item.instances == 2


@pytest.mark.parametrize("server", ["A", "B"])
def test_a_streamed_instance_has_its_header_deidentified_and_its_pixels_unchanged(
        portal, empty_orthanc, researcher, settings, tmp_path, monkeypatch, filing_only_renames, server):
    monkeypatch.setattr(messages.MessageAssembler, "stream_after", 1 << 20)
    project = Project.objects.create(name="TRIAL1")
    source = tmp_path / "big.dcm"
    header = write_huge_instance(source, 6, patient_id="BIGPATIENT", rows=512, cols=512)
    empty_orthanc.load(tmp_path)
    job = retrieve(researcher, [{"StudyInstanceUID": header.StudyInstanceUID, "Server": server}])
    assert job.status == "succeeded", job.items.get().error
    (kept,) = settings.DOWNLOADS_DIR.rglob("*.dcm")
    data, sent = kept.read_bytes(), source.read_bytes()
    for planted in (b"BIGPATIENT", b"Huge Hospital", b"Doctor^Huge", b"HUGEACC", header.SOPInstanceUID.encode()):
        assert planted not in data[:65536], planted
    ds = pydicom.dcmread(kept)
    assert ds.PatientID == project.patient("BIGPATIENT").pseudonym
    assert ds.SOPInstanceUID == project.recipe().uid(header.SOPInstanceUID)
    pixels = files.header_end(sent[files.read_meta(sent).dataset_offset:], header.file_meta.TransferSyntaxUID)
    offset = files.read_meta(sent).dataset_offset + pixels
    assert data.endswith(sent[offset:])  # the pixel data element, byte for byte
