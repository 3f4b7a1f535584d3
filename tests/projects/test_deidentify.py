"""The Django-free transform (apps/dicom/deidentify.py) against the standard's list, real files and
synthetic instances with planted identifiers. No database."""
from __future__ import annotations

import datetime as dt
import io
import re
import subprocess

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from apps.dicom import deidentify as d
from apps.dicom.deid_dataset import deidentify_with_pydicom
from tests.projects import planted
from tests.projects.e11_attributes import BASIC_PROFILE

SECRET = b"k" * 32


def recipe(*options, allow_burned_in=False, secret=SECRET):
    return d.Recipe(secret, options, allow_burned_in=allow_burned_in)


def keys(secret=SECRET, project="TRIAL1", max_days=30):
    return lambda pid: d.patient_keys(secret, project, pid, max_days)


def run(data: bytes, rec=None, patient_for=None) -> d.Deidentified:
    return d.deidentify_bytes(data, rec or recipe(), patient_for or keys())


# -- the standard's table, from a second source --------------------------------------------------------

SAMPLE = {"AE": "PLANTAE", "AS": "045Y", "CS": "PLANTCS", "DA": "20190203", "DS": "1.5", "DT": "20190203101010",
          "IS": "7", "LO": "Plantlo", "LT": "Plantlt", "PN": "Plant^Pn", "SH": "Plantsh", "ST": "Plantst",
          "TM": "101010", "UC": "Plantuc", "UI": "1.2.826.0.1.3680043.8.498.5", "UR": "http://plant.example/x",
          "UT": "Plantut", "US": 7, "SS": 7, "UL": 7, "SL": 7, "FL": 1.5, "FD": 1.5, "OB": b"PLANTOB!",
          "OW": b"PLANTOW!", "UN": b"PLANTUN!", "SQ": None}


def every_listed_attribute() -> tuple[Dataset, dict[int, str]]:
    ds = Dataset()
    ds.SOPClassUID = planted.CT
    listed = {}
    for action, tags in BASIC_PROFILE.items():
        for group, element in tags:
            tag = group << 16 | element
            if group in (0x0000, 0x0002) or tag in (0x00080016, 0xFFFAFFFA, 0xFFFCFFFC):
                continue  # command and meta elements, and the ones with a place of their own
            try:
                vr = dictionary_VR(tag).split(" or ")[0]
            except KeyError:
                continue
            if vr not in SAMPLE:
                continue
            value = SAMPLE[vr]
            if vr == "SQ":
                item = Dataset()
                item.PatientID = "PLANTINSQ"
                value = [item]
            ds.add_new(tag, vr, value)
            listed[tag] = action
    return ds, listed


def test_every_attribute_of_the_second_table_gets_its_basic_profile_action():
    ds, listed = every_listed_attribute()
    assert len(listed) > 550  # the second table is nearly whole in pydicom's dictionary
    out = planted.read(run(planted.as_file(ds)).data)
    wrong = []
    for tag, action in listed.items():
        name = keyword_for_tag(tag) or hex(tag)
        if tag in (0x00100010, 0x00100020):
            continue  # replaced by the pseudonym, checked below
        present = tag in out
        value = out[tag].value if present else None
        original = ds[tag].value
        empty = present and (value in (None, "", b"") or (ds[tag].VR == "SQ" and len(value) == 0))
        if action == "X" and present:
            wrong.append(f"{name} X kept")
        elif action == "Z" and not empty:
            wrong.append(f"{name} Z not empty")
        elif action in ("D", "Z/D", "X/D", "X/Z/D") and present and not empty and value == original \
                and ds[tag].VR not in ("SQ", "US", "SS", "UL", "SL", "FL", "FD"):
            wrong.append(f"{name} {action} kept its value")
        elif action == "X/Z" and present and not empty:
            wrong.append(f"{name} X/Z has a value")
        elif action == "U" and (not present or not str(value).startswith("2.25.") or value == original):
            wrong.append(f"{name} U not replaced")
        if ds[tag].VR == "SQ" and present and not empty:
            if any("PatientID" in item and item.PatientID == "PLANTINSQ" for item in value):
                wrong.append(f"{name} item kept the planted PatientID")
    assert wrong == [], wrong


def test_the_code_table_and_the_second_table_agree_on_the_basic_actions():
    from apps.dicom.deid_table import TABLE

    differ = [(hex(g << 16 | e), a, TABLE[g << 16 | e][0]) for a, tags in BASIC_PROFILE.items()
              for g, e in tags if (g << 16 | e) in TABLE and TABLE[g << 16 | e][0] != a]
    assert differ == []
    missing = [hex(g << 16 | e) for tags in BASIC_PROFILE.values() for g, e in tags if (g << 16 | e) not in TABLE]
    assert len(missing) < 40  # the two transcriptions are a year apart: attributes added since, not gaps


# -- planted identifiers -----------------------------------------------------------------------------

@pytest.mark.parametrize("charset", list(planted.NAMES))
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_the_byte_search_finds_every_planted_value_in_the_original(charset, syntax):
    """Every leak test passes when the search finds nothing: it must find each planted value, the name's
    parts in the file's own character set included (ISO 2022 IR 149's escapes, UTF-8), where they are."""
    data = planted.as_file(planted.planted_dataset(charset), syntax)
    everything = planted.PLANTED + planted.name_tokens(planted.NAMES[charset][1])
    assert sorted(planted.leaks(data, charset)) == sorted(everything)


@pytest.mark.parametrize("charset", list(planted.NAMES))
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("options", [(), (d.OPTION_DATES,), (d.OPTION_DESCRIPTORS, d.OPTION_DATES)])
def test_no_planted_identifier_survives_in_the_bytes(charset, syntax, options):
    data = planted.as_file(planted.planted_dataset(charset), syntax)
    assert set(planted.leaks(data, charset)) >= {"PLANT-ID-4711", "Plantprivate"}  # the search works
    result = run(data, recipe(*options))
    # Clean Descriptors keeps descriptive text, less the patient's own identifiers (docs/pseudonymization.md)
    kept_text = {"Plantcomment", "Plantreqdesc"} if d.OPTION_DESCRIPTORS in options else set()
    assert set(planted.leaks(result.data, charset)) == kept_text
    out = planted.read(result.data)
    pseudonym = keys()(planted.PATIENT_ID).pseudonym
    assert out.PatientID == pseudonym == result.patient_id and str(out.PatientName) == pseudonym
    assert re.fullmatch(r"TRIAL1-[A-Z2-7]{10}", pseudonym)
    assert out.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100" and all(item.CodingSchemeDesignator == "DCM"
                                        for item in out.DeidentificationMethodCodeSequence)
    assert ("113107" in codes) == (d.OPTION_DATES in options)
    assert ("113105" in codes) == (d.OPTION_DESCRIPTORS in options)
    assert not [e for e in out.iterall() if e.tag.is_private]
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID == result.sop_instance_uid


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's own UIDs, as pydicom ships it
def test_the_byte_walk_and_pydicom_agree_on_planted_and_real_files():
    files = [planted.as_file(planted.planted_dataset(c)) for c in planted.NAMES]
    files += [open(get_testdata_file(n), "rb").read() for n in REAL_FILES]
    for data in files:
        for options in [(), d.OPTIONS]:
            rec = recipe(*options, allow_burned_in=True)
            walked, reference = planted.read(run(data, rec).data), planted.read(
                deidentify_with_pydicom(data, rec, keys()).data)
            assert dump(walked) == dump(reference)


def dump(ds: Dataset) -> list:
    def value(e):
        if e.VR == "SQ":
            return [dump(item) for item in e.value]
        return None if e.value in (None, "", b"") else str(e.value)
    return [(e.tag, value(e)) for e in ds]


# -- dates --------------------------------------------------------------------------------------------

def test_dates_of_one_patient_move_by_one_shift_and_keep_their_intervals():
    first = run(planted.as_file(planted.planted_dataset(study_date="20200301")), recipe(d.OPTION_DATES))
    second = run(planted.as_file(planted.planted_dataset(study_date="20210615", sop_uid="1.2.3.9")),
                 recipe(d.OPTION_DATES))
    shift = keys()(planted.PATIENT_ID).date_shift_days
    assert shift != 0 and abs(shift) <= 30
    day = dt.timedelta(days=shift)
    a, b = planted.read(first.data), planted.read(second.data)

    def date(text):
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    assert date(a.StudyDate) == dt.date(2020, 3, 1) + day and first.study_date == a.StudyDate
    assert date(b.StudyDate) - date(a.StudyDate) == dt.date(2021, 6, 15) - dt.date(2020, 3, 1)
    assert date(a.ContentDate) - date(a.StudyDate) == dt.timedelta(days=2)
    nested = a.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
    assert date(nested) == dt.date(2020, 3, 2) + day and nested[8:] == "091500"
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "PatientBirthDate" not in a or not a.PatientBirthDate


def test_without_the_dates_option_no_date_remains():
    out = planted.read(run(planted.as_file(planted.planted_dataset())).data)
    assert not out.StudyDate and out.LongitudinalTemporalInformationModified == "REMOVED"
    nested = out.RadiopharmaceuticalInformationSequence[0]
    assert not nested.get("RadiopharmaceuticalStartDateTime") or \
        nested.RadiopharmaceuticalStartDateTime.startswith("1900")


def test_shifts_stay_within_the_range_and_differ_between_patients():
    shifts = {d.patient_keys(SECRET, "P", f"ID{k}", 10).date_shift_days for k in range(300)}
    assert shifts <= set(range(-10, 11)) - {0} and len(shifts) == 20


# -- consistency ----------------------------------------------------------------------------------------

def test_the_same_secret_maps_the_same_uids_and_another_project_others():
    data = planted.as_file(planted.planted_dataset())
    one, again = run(data), run(data, recipe())
    other = run(data, recipe(secret=b"z" * 32), keys(secret=b"z" * 32, project="TRIAL2"))
    assert one.study_instance_uid == again.study_instance_uid == d.new_uid(SECRET, planted.STUDY_UID)
    assert one.sop_instance_uid == again.sop_instance_uid and one.data == again.data
    assert re.fullmatch(r"2\.25\.\d{1,39}", one.study_instance_uid) and len(one.study_instance_uid) <= 64
    assert other.study_instance_uid != one.study_instance_uid and other.patient_id != one.patient_id
    assert planted.read(one.data).ReferencedImageSequence[0].ReferencedSOPInstanceUID == \
        d.new_uid(SECRET, "1.2.826.0.1.3680043.8.498.77009")


# -- options --------------------------------------------------------------------------------------------

def test_options_keep_what_they_name_and_nothing_else():
    data = planted.as_file(planted.planted_dataset("ISO_IR 100"))
    plain = planted.read(run(data).data)
    assert not plain.PatientSex and "PatientWeight" not in plain and "PatientAge" not in plain
    assert plain.get("DeviceSerialNumber") in (None, "", "ANONYMIZED") and "StudyDescription" not in plain
    kept = planted.read(run(data, recipe(d.OPTION_PATIENT, d.OPTION_DEVICE, d.OPTION_DESCRIPTORS)).data)
    assert (kept.PatientSex, kept.PatientAge, kept.PatientWeight) == ("F", "060Y", 71)
    assert kept.DeviceSerialNumber == "PLANTSN123" and kept.StationName == "PLANTSTATION"
    assert kept.StudyDescription == "CT Thorax" and kept.SeriesDescription == "Axial 5mm"
    # a descriptor kept is cleaned of the patient's own identifiers
    assert "Weißplant" not in kept.StudyComments and planted.PATIENT_ID not in kept.StudyComments
    assert "Plantcomment" in kept.StudyComments


def test_safe_private_keeps_only_listed_private_elements():
    ds = planted.planted_dataset()
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    block.add_new(0x23, "DS", "1.5")
    block.add_new(0x99, "LO", "Plantprivate")
    elsewhere = ds.private_block(0x0021, "GEMS_ACQU_01", create=True)  # a safe creator in another group
    elsewhere.add_new(0x23, "LO", "Plantprivate")
    out = planted.read(run(planted.as_file(ds), recipe(d.OPTION_PRIVATE)).data)
    private = {e.tag: e.value for e in out if e.tag.is_private}
    assert private == {0x00190010: "GEMS_ACQU_01", 0x00191023: "1.5"}


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="retain-everything"):
        d.Recipe(SECRET, ["retain-everything"])


# -- burned-in text and what cannot be processed ------------------------------------------------------------

@pytest.mark.parametrize("sop_class,burned_in,held", [
    (planted.CT, "YES", True), (planted.CT, None, False), (planted.CT, "NO", False),
    ("1.2.840.10008.5.1.4.1.1.7", None, True), ("1.2.840.10008.5.1.4.1.1.7", "NO", False),
    ("1.2.840.10008.5.1.4.1.1.6.1", None, True), ("1.2.840.10008.5.1.4.1.1.6.1", "NO", False),
])
def test_likely_burned_in_text_is_held_back_with_a_reason(sop_class, burned_in, held):
    data = planted.as_file(planted.planted_dataset(sop_class=sop_class, burned_in=burned_in))
    if held:
        with pytest.raises(d.HeldBack, match="pixels"):
            run(data)
        assert run(data, recipe(allow_burned_in=True)).sop_instance_uid.startswith("2.25.")
    else:
        assert run(data).sop_instance_uid.startswith("2.25.")


def test_an_encapsulated_document_or_garbage_fails_with_a_reason():
    pdf = planted.planted_dataset(sop_class="1.2.840.10008.5.1.4.1.1.104.1")
    with pytest.raises(d.CannotDeidentify, match="encapsulated document"):
        run(planted.as_file(pdf), recipe(allow_burned_in=True))
    with pytest.raises(d.CannotDeidentify, match="unreadable"):
        run(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")


# -- real files -------------------------------------------------------------------------------------------

REAL_FILES = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
              "emri_small_jpeg_2k_lossless.dcm", "693_J2KR.dcm", "rtdose.dcm", "liver.dcm",
              "JPGLosslessP14SV1_1s_1f_8b.dcm", "waveform_ecg.dcm", "SC_rgb_rle.dcm", "image_dfl.dcm"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's own UIDs, as pydicom ships it
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_keep_their_pixels_and_lose_their_identifiers(name):
    data = open(get_testdata_file(name), "rb").read()
    original = pydicom.dcmread(io.BytesIO(data))
    result = run(data, recipe(d.OPTION_DATES, allow_burned_in=True))
    out = planted.read(result.data)
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    for keyword in ("PixelData", "WaveformSequence"):
        if keyword in original:
            assert (out[keyword].value == original[keyword].value) if keyword == "PixelData" else \
                len(out[keyword].value) == len(original[keyword].value)
    assert out.SOPInstanceUID == d.new_uid(SECRET, original.SOPInstanceUID)
    assert out.PatientID == keys()(str(original.get("PatientID", ""))).pseudonym
    name_value = str(original.get("PatientName", "")).replace("^", " ").split()
    for part in [p for p in name_value if len(p) >= 4] + [str(original.get("PatientID", ""))]:
        if len(part) >= 4:
            assert part.encode() not in result.data, part
    assert not [e for e in out.iterall() if e.tag.is_private]


@pytest.mark.parametrize("name", ["US1_J2KR.dcm", "JPEG2000.dcm"])
def test_real_ultrasound_and_secondary_capture_without_no_are_held_back(name):
    with pytest.raises(d.HeldBack):
        run(open(get_testdata_file(name), "rb").read())


def dciodvfy_errors(path) -> set[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    return {re.sub(r"<[^>]*>|\[[^]]*\]|= .*", "", line).strip() for line in lines if line.startswith("Error")}


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "rtdose.dcm", "liver.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
@pytest.mark.parametrize("options", [(), d.OPTIONS])
def test_the_result_has_no_dciodvfy_error_the_original_did_not_have(name, options, tmp_path):
    source = get_testdata_file(name)
    target = tmp_path / "out.dcm"
    target.write_bytes(run(open(source, "rb").read(), recipe(*options, allow_burned_in=True)).data)
    assert dciodvfy_errors(target) - dciodvfy_errors(source) == set()


def test_planted_instance_is_valid_for_dciodvfy(tmp_path):
    source, target = tmp_path / "in.dcm", tmp_path / "out.dcm"
    source.write_bytes(planted.as_file(planted.planted_dataset()))
    target.write_bytes(run(source.read_bytes(), recipe(d.OPTION_DATES)).data)
    assert dciodvfy_errors(target) - dciodvfy_errors(source) == set()
