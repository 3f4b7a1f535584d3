"""What a project's delivery sends (apps/delivery/deidentified.py): de-identified copies named by the
pseudonymized layout, the same bytes on a re-run (a resumed upload lines up), held-back instances listed
under the project's UID, and the originals kept apart for clearing."""
from __future__ import annotations

import pytest

from apps.delivery.deidentified import deidentify_entries
from apps.projects.models import Project
from tests.projects.planted import PATIENT_ID, as_file, leaks, planted_dataset, read

pytestmark = pytest.mark.django_db
SC = "1.2.840.10008.5.1.4.1.1.7"


def retrieved(root):
    folder = root / "LK" / f"20200301_{PATIENT_ID}_CT"
    folder.mkdir(parents=True)
    entries = []
    for n, (charset, sop_class) in enumerate([("ISO_IR 192", None), ("ISO 2022 IR 149", None),
                                              ("ISO_IR 100", SC)]):
        uid = f"1.2.826.0.1.3680043.8.498.7740{n}"
        ds = planted_dataset(charset, sop_uid=uid, **({"sop_class": sop_class} if sop_class else {}))
        (folder / f"{uid}.dcm").write_bytes(as_file(ds))
        entries.append((f"LK/20200301_{PATIENT_ID}_CT/{uid}.dcm", folder / f"{uid}.dcm"))
    return entries


def test_a_projects_delivery_sends_deidentified_copies_only(tmp_path):
    project = Project.objects.create(name="TRIAL1")
    entries = retrieved(tmp_path / "downloads")
    batch = deidentify_entries(project, entries, tmp_path / "work")
    pseudonym = project.patient(PATIENT_ID).pseudonym
    recipe = project.recipe()
    assert [name for name, _ in batch.entries] == sorted(
        f"LK/NODATE_{pseudonym}_CT/{recipe.uid(f'1.2.826.0.1.3680043.8.498.7740{n}')}.dcm" for n in range(2))
    for (name, path), charset in zip(batch.entries, ["ISO_IR 192", "ISO 2022 IR 149", "ISO_IR 100"]):
        data = path.read_bytes()
        assert path.is_relative_to(tmp_path / "work") and read(data).PatientID == pseudonym
        for any_charset in ("ISO_IR 192", "ISO 2022 IR 149", "ISO_IR 100"):
            assert leaks(data, any_charset) == []
        assert batch.originals[name] in {p for _, p in entries}
    assert batch.not_sent == [(recipe.uid("1.2.826.0.1.3680043.8.498.77402"), batch.not_sent[0][1])]
    assert batch.not_sent[0][1].startswith("held back")
    again = deidentify_entries(project, entries, tmp_path / "work2")
    assert [p.read_bytes() for _, p in again.entries] == [p.read_bytes() for _, p in batch.entries]


@pytest.mark.parametrize("memory,large", [(0, False), (10**9, False), (0, True)])
def test_the_stream_makes_the_same_zip_as_the_copies_without_writing_one(tmp_path, memory, large, monkeypatch):
    """Every file made again as it is read; every file kept; every file taken as a large one (its head
    de-identified, its pixel data read from the original as the stream reaches it)."""
    from apps.delivery.deidentified import plan_entries
    from apps.delivery.zipstream import ZipStream
    from apps.dicom import files

    if large:
        monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)

    project = Project.objects.create(name="TRIAL1")
    entries = retrieved(tmp_path / "downloads")
    before = sorted(p for p in tmp_path.rglob("*"))
    planned = plan_entries(project, entries, memory=memory)
    assert sorted(p for p in tmp_path.rglob("*")) == before, "nothing written on this side"
    assert all((source.result().rest is not None) == large for _, source in planned.entries)
    copies = deidentify_entries(project, entries, tmp_path / "work")
    assert [n for n, _ in planned.entries] == [n for n, _ in copies.entries]
    assert planned.not_sent == copies.not_sent and planned.originals == copies.originals
    streamed, written = ZipStream(planned.entries), ZipStream(copies.entries)
    assert streamed.length == written.length
    assert bytes(streamed.read(0, streamed.length)) == bytes(written.read(0, written.length))
    cut = streamed.length // 2  # a resumed upload: the rest produced again from the middle of an entry
    assert bytes(ZipStream(planned.entries).read(cut, streamed.length)) == bytes(written.read(cut, written.length))


@pytest.mark.parametrize("large", [False, True])
def test_an_original_changed_after_planning_stops_the_stream(tmp_path, large, monkeypatch):
    from apps.delivery.deidentified import plan_entries
    from apps.delivery.zipstream import SourceChanged, ZipStream
    from apps.dicom import files

    if large:
        monkeypatch.setattr(files, "LARGE_FILE_BYTES", 0)

    project = Project.objects.create(name="TRIAL1")
    entries = retrieved(tmp_path / "downloads")
    planned = plan_entries(project, entries, memory=0)
    ds = planted_dataset("ISO_IR 192", sop_uid="1.2.826.0.1.3680043.8.498.77400")
    ds.InstanceNumber = 987654  # kept by the profile: the de-identified file grows
    entries[0][1].write_bytes(as_file(ds))
    stream = ZipStream(planned.entries)
    with pytest.raises(SourceChanged):
        stream.read(0, stream.length)


def test_a_huge_instance_is_delivered_de_identified_in_flat_memory(tmp_path):
    """A 150 MB multi-frame instance through the zip stream (portal and zip deliveries) and as a copy (folder
    and PACS deliveries): the process's peak RSS grows by a few megabytes, the pixel data arrives as it was."""
    import zipfile

    import pydicom

    from apps.delivery.deidentified import plan_entries
    from apps.delivery.zipstream import ZipStream
    from apps.dicom.demo.huge import write_huge_instance
    from tests.dicom.memory import peak_growth_mb

    folder = tmp_path / "downloads" / "LK" / "20240101_HUGE1_CT"
    folder.mkdir(parents=True)
    original = write_huge_instance(folder / "huge.dcm", 150, rows=512, cols=512)
    source = folder / "huge.dcm"
    project = Project.objects.create(name="TRIAL1")
    entries = [("LK/20240101_HUGE1_CT/huge.dcm", source)]
    with peak_growth_mb() as streamed:
        planned = plan_entries(project, entries)
        ZipStream(planned.entries).write_to(tmp_path / "batch.zip")
    with peak_growth_mb() as copied:
        copies = deidentify_entries(project, entries, tmp_path / "work")
    print(f"a {source.stat().st_size / 1e6:.0f} MB instance delivered de-identified: peak RSS grew "
          f"{streamed.mb:.1f} MB (zip stream), {copied.mb:.1f} MB (copy)")
    (name, copy), = copies.entries
    with zipfile.ZipFile(tmp_path / "batch.zip") as archive, archive.open(name) as entry, open(copy, "rb") as fp:
        while piece := entry.read(1 << 20):  # the zip's entry, CRC checked by zipfile, equals the copy
            assert piece == fp.read(len(piece))
        assert not fp.read(1)
    header = pydicom.dcmread(copy, stop_before_pixels=True)
    assert header.PatientID == project.patient("HUGE1").pseudonym and header.PatientIdentityRemoved == "YES"
    size = original.Rows * original.Columns * 2 * original.NumberOfFrames
    with open(source, "rb") as a, open(copy, "rb") as b:
        a.seek(-size, 2)
        b.seek(-size, 2)
        while piece := a.read(1 << 20):
            assert piece == b.read(len(piece)), "the pixel data, byte for byte"
    assert streamed.mb < 40 and copied.mb < 40  # the zip stream works in 16 MB blocks, whatever the file
