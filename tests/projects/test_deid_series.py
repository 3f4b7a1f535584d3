"""The receiver de-identifies a series' instances reusing the walk over the previous one
(apps/dicom/deid_series.py). Its output must be byte for byte what the whole walk (deidentify_bytes) makes
of each instance, whatever changes between instances: the volatile values it re-walks, the dropped private
elements it steps over, and every change it must not take for volatile (another patient, character set,
SOP class, burned-in flag, a sequence, an element more or less), hostile framing included."""
from __future__ import annotations

import copy

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from apps.dicom import deid_stream, deidentify, element_codec
from apps.dicom.deid_form import Deidentifying
from apps.dicom.staged import Withheld
from tests.projects.planted import PLANTED, as_file, leaks, planted_dataset

SECRET = bytes(range(32))


def patients(recipe):
    return lambda patient_id: deidentify.patient_keys(recipe.secret, "TRIAL1", patient_id, 30)


def expected(data: bytes, recipe) -> tuple[str, bytes | str]:
    """The whole walk's result for one file, as the form reports it."""
    try:
        return "ok", deidentify.deidentify_bytes(data, recipe, patients(recipe)).data
    except deidentify.HeldBack as exc:
        return "withheld", f"held back: {exc.reason}"
    except deidentify.CannotDeidentify as exc:
        return "withheld", f"not de-identified: {exc.reason}"


def formed(form: Deidentifying, data: bytes) -> tuple[str, bytes | str]:
    start = element_codec.read_meta(data)[1]
    try:
        out = form.whole((data[:start], memoryview(data)[start:]))  # bytes, or the pieces of them
        return "ok", out if isinstance(out, bytes) else b"".join(bytes(chunk) for chunk in out)
    except Withheld as exc:
        return "withheld", str(exc)


class Counting(Deidentifying):
    """Counts the whole walks, so a test knows the template did the rest."""

    whole_walks = 0

    def _walked(self, data, walked):
        self.whole_walks += walked is not None
        return super()._walked(data, walked)


def series(base, count: int, change=lambda ds, k: None, syntax=ExplicitVRLittleEndian) -> list[bytes]:
    """`count` instances of one series from `base`, whose volatile values differ the way a scanner's do
    (lengths too): SOP Instance UID, Instance Number, the slice's position and location, its time."""
    out = []
    for k in range(count):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{7 + k * 13}"
        ds.InstanceNumber = k * 7 + 1
        ds.ImagePositionPatient = [-125.5, -99.25 + k, 12.5 - k * 2.75]
        ds.SliceLocation = 12.5 - k * 2.75
        ds.AcquisitionTime = f"1015{k % 60:02d}" + (".5" * (k % 2))
        ds.ContentDate = f"202003{k % 28 + 1:02d}"
        change(ds, k)
        out.append(as_file(ds, syntax))
    return out


def check_series(files: list[bytes], options=(deidentify.OPTION_DATES, deidentify.OPTION_DESCRIPTORS)):
    recipe = deidentify.Recipe(SECRET, list(options))
    form = Counting(recipe, patients(recipe))
    for n, data in enumerate(files):
        assert formed(form, data) == expected(data, recipe), f"instance {n}"
    return form


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_series_comes_out_as_the_whole_walk_makes_it_and_walks_whole_only_to_learn(syntax):
    form = check_series(series(planted_dataset("ISO_IR 192"), 30, syntax=syntax))
    assert form.whole_walks <= 2  # the first instance, and the second to learn what varies


def test_nothing_planted_survives_the_template():
    recipe = deidentify.Recipe(SECRET, [deidentify.OPTION_DATES])
    form = Counting(recipe, patients(recipe))
    for data in series(planted_dataset("ISO 2022 IR 149"), 6):
        status, out = formed(form, data)
        assert status == "ok" and not leaks(out, "ISO 2022 IR 149"), leaks(out, "ISO 2022 IR 149")
        assert not [p for p in PLANTED if p.encode() in out]
    assert form.whole_walks <= 2


def test_private_elements_that_change_per_instance_are_stepped_over():
    """A real CT with GE private tags (pydicom's CT_small), a private value changing length per instance:
    dropped either way, and no whole walk for it."""
    def vary_private(ds, k):
        ds[0x0019, 0x1000 + 0x10] = pydicom.DataElement(0x00191010, "LO", "x" * (k % 5 + 1)) \
            if (0x0019, 0x0010) in ds else None
        ds.add_new(0x00431010, "LO", "per-slice " + "y" * k)  # (no creator: dropped like the others)

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    form = check_series(series(base, 12, vary_private))
    assert form.whole_walks <= 3


def test_with_safe_private_kept_a_changing_private_value_takes_the_whole_walk():
    def vary(ds, k):
        ds.private_block(0x0009, "PLANT CORP")[0x01].value = f"value {k}"

    check_series(series(planted_dataset("ISO_IR 100"), 5, vary),
                 options=(deidentify.OPTION_PRIVATE, deidentify.OPTION_DATES))


@pytest.mark.parametrize("change", [
    "patient", "name", "charset", "sop_class", "burned_in", "sequence", "added", "removed", "birth_date",
    "accession", "vr", "study", "trailing_private",
])
def test_what_the_template_must_not_take_for_volatile_comes_out_as_the_whole_walk_makes_it(change):
    def mutate(ds, k):
        if k < 4:
            return
        # What descriptors are cleaned of changes with these: a free text naming the new value shows it.
        if change == "patient":
            ds.PatientID = f"OTHER-{k}"
            ds.StudyComments = f"comment on OTHER-{k}"
        elif change == "name":
            ds.PatientName = f"Other^Namefor{k}"
            ds.StudyComments = f"comment on Namefor{k}"
        elif change == "charset":
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.PatientName = "Weißplant^Zoë"
            ds.StudyComments = f"comment {k} on Weißplant"
        elif change == "sop_class":
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture: held back
        elif change == "burned_in":
            ds.BurnedInAnnotation = "YES"
        elif change == "sequence":
            ds.RequestAttributesSequence[0].RequestedProcedureDescription = f"Plantreqdesc {k}"
        elif change == "added":
            ds.SeriesDescription = None
            ds.ProtocolName = f"protocol {k}"
        elif change == "removed":
            del ds.StationName
        elif change == "birth_date":
            ds.PatientBirthDate = f"196001{k:02d}"
            ds.StudyComments = f"born 196001{k:02d}"
        elif change == "accession":
            ds.AccessionNumber = f"PLANTACC{k}"
            ds.StudyComments = f"accession PLANTACC{k}"
        elif change == "vr":
            ds["InstanceNumber"] = pydicom.DataElement(0x00200013, "LO", f"number {k}")
        elif change == "study":
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{k}"
        elif change == "trailing_private":
            ds.add_new(0x00990010, "LO", "LATE CREATOR")

    check_series(series(planted_dataset("ISO_IR 192"), 8, mutate))


def test_a_hostile_instance_after_a_learned_series_is_refused_as_the_whole_walk_refuses_it():
    """Framing that lies (a volatile element's length pointing past the header, then into the next
    element's header) after the template was learned: the same refusal or result as the whole walk."""
    files = series(planted_dataset("ISO_IR 192"), 5)
    good = files[-1]
    at = good.index(b"\x20\x00\x13\x00IS")  # Instance Number, explicit VR
    length = int.from_bytes(good[at + 6:at + 8], "little")
    hostile = [good[:at + 6] + (length + 8).to_bytes(2, "little") + good[at + 8:],
               good[:at + 6] + (60000).to_bytes(2, "little") + good[at + 8:],
               good[:at + 6] + (length + 1).to_bytes(2, "little") + good[at + 8:]]
    recipe = deidentify.Recipe(SECRET, [deidentify.OPTION_DATES])
    for data in hostile:
        form = Counting(recipe, patients(recipe))
        for learned in files:
            formed(form, learned)
        assert formed(form, data) == expected(data, recipe)
        assert formed(form, good) == expected(good, recipe)  # and the next good one still comes out right


def test_a_file_meta_cut_inside_an_element_header_is_refused_with_a_reason():
    """A file meta ending inside a long VR element's header (its 4-byte length missing) is refused as
    unreadable, by the whole walk and by the form handed it as a received instance's meta."""
    cut = b"\0" * 128 + b"DICM" + b"\x02\x00\x01\x00OB\x00\x00"
    recipe = deidentify.Recipe(SECRET, [deidentify.OPTION_DATES])
    with pytest.raises(deidentify.CannotDeidentify, match="unreadable"):
        deidentify.deidentify_bytes(cut, recipe, patients(recipe))
    with pytest.raises(Withheld, match="not de-identified: unreadable"):
        Deidentifying(recipe, patients(recipe)).whole((cut, memoryview(b"")))


def test_two_threads_keep_their_own_templates():
    import threading

    recipe = deidentify.Recipe(SECRET, [deidentify.OPTION_DATES])
    form = Counting(recipe, patients(recipe))
    one = series(planted_dataset("ISO_IR 192"), 20)
    other = series(planted_dataset("ISO_IR 100"), 20, lambda ds, k: setattr(ds, "SeriesNumber", 2))
    failures = []

    def run(files):
        for data in files:
            if formed(form, data) != expected(data, recipe):
                failures.append(data)

    threads = [threading.Thread(target=run, args=(files,)) for files in (one, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert form.whole_walks <= 4


def test_two_series_sent_in_turns_reuse_what_each_series_value_became():
    """A PACS may send a study's series in turns: the series' own values (UIDs, descriptions) recur, and
    what they became is remembered, not walked again; every output is still the whole walk's."""
    def second(ds, k):
        ds.SeriesInstanceUID, ds.SeriesDescription = "1.2.826.0.1.3680043.8.498.88001", "Coronal 2mm"
        ds.SeriesNumber, ds.FrameOfReferenceUID = 2, "1.2.826.0.1.3680043.8.498.88002"

    one = series(planted_dataset("ISO_IR 192"), 12)
    other = series(planted_dataset("ISO_IR 192"), 12, second)
    recipe = deidentify.Recipe(SECRET, [deidentify.OPTION_DATES, deidentify.OPTION_DESCRIPTORS])
    form = Counting(recipe, patients(recipe))
    emitted = []
    original = deid_stream.StreamWalk.emit

    def counting_emit(self, elements, *args, **kwargs):
        emitted.append(len(elements))
        return original(self, elements, *args, **kwargs)

    turns = [data for pair in zip(one, other) for data in pair]
    wanted = [expected(data, recipe) for data in turns]
    walks_per_instance = []
    deid_stream.StreamWalk.emit = counting_emit
    try:
        for data, want in zip(turns, wanted):
            emitted.clear()
            assert formed(form, data) == want
            walks_per_instance.append(emitted[:])
    finally:
        deid_stream.StreamWalk.emit = original
    assert form.whole_walks <= 3
    # after learning: each instance's new SOP Instance UID walked, and its content date when new (they
    # repeat in the other series); the series' own values (UIDs, number, description) recalled
    assert all(len(walks) <= 2 for walks in walks_per_instance[-10:]), walks_per_instance


@pytest.mark.parametrize("change", ["huge_private", "huge_public", "no_pixels", "added_last",
                                    "private_after_pixels"])
def test_an_instance_far_from_the_learned_header_comes_out_as_the_whole_walk_makes_it(change):
    """After a learned series: a header grown by more than the template reads ahead (a dropped private
    value, a volatile public one), an instance without pixel data, a private element the walk drops lying
    past the pixel data's tag."""
    def mutate(ds, k):
        if k < 4:
            return
        if change == "huge_private":
            ds.add_new(0x00431010, "LT", "p" * 3000)
        elif change == "huge_public":
            ds.ImageComments = "c" * (3000 + k)
        elif change == "no_pixels":
            del ds.PixelData
        elif change == "added_last":  # after the last element the template knows, before the pixel data
            ds.add_new(0x00880140, "UI", f"1.2.826.0.1.3680043.8.498.{k}")
        elif change == "private_after_pixels":
            ds.add_new(0x7FE10010, "LO", "LATE CREATOR")
            ds.add_new(0x7FE11001, "LO", f"late {k}")

    def learn_comments(ds, k):
        ds.ImageComments = f"slice {k}"  # volatile before it grows
        mutate(ds, k)

    check_series(series(planted_dataset("ISO_IR 192"), 7, learn_comments))
