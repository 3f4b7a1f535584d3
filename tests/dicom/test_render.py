"""DICOM -> JPEG rendering, pixel for pixel against DCMTK's dcmj2pnm (the same windowing rules, one
grey level of rounding allowed) on pydicom's and pydicom-data's real files, and against pydicom's
decoders for the syntaxes DCMTK does not decode (JPEG 2000, JPEG-LS)."""
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from apps.dicom import flat_image, render
from apps.dicom.catalog_entry import read_entry
from apps.dicom.dataset_header import read_header
from apps.dicom.header import HeaderError
from apps.dicom.render import RenderError, display_array, first, read_dataset, render_file, render_jpeg
from tests.imports.tree import BASIC_TEXT_SR, base, ct, grey, halves, write


def real(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path, f"{name} is not installed (pydicom / pydicom-data)"
    return path


def dcmtk(path, tmp_path, *options) -> np.ndarray:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if not options:
        options = ("+Wl", "1") if "VOILUTSequence" in ds else ("+Wi", "1") if "WindowCenter" in ds else ("+Wm",)
    out = tmp_path / "dcmtk.pnm"
    subprocess.run(["dcmj2pnm", *options, str(path), str(out)], check=True, capture_output=True)
    return np.asarray(Image.open(out)).astype(int)


@pytest.mark.parametrize("name", [
    "CT_small.dcm",                    # int16 CT, no window: min/max
    "MR_small.dcm",                    # a window
    "MR_small_RLE.dcm",                # RLE
    "JPEG-LL.dcm",                     # JPEG lossless, process 14
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1
    "mlut_18.dcm",                     # Modality LUT Sequence
    "vlut_04.dcm",                     # VOI LUT Sequence
    "SC_rgb_jpeg_dcmtk.dcm",           # JPEG baseline YBR_FULL
    "SC_ybr_full_uncompressed.dcm",    # YBR_FULL, not compressed
    "SC_rgb_16bit.dcm",                # RGB 16 bits
    "SC_rgb_rle.dcm",                  # RGB RLE
    "OBXXXX1A_rle.dcm",                # PALETTE COLOR, RLE
    "emri_small.dcm",                  # multi-frame: the first frame
])
def test_it_renders_like_dcmtk(name, tmp_path):
    ours = display_array(read_dataset(real(name))).astype(int)
    reference = dcmtk(real(name), tmp_path)
    assert ours.shape == reference.shape
    # YBR -> RGB rounds differently in pydicom and DCMTK: two levels there, one elsewhere.
    assert np.abs(ours - reference).max() <= (2 if "YBR" in read_dataset(real(name)).PhotometricInterpretation else 1)


def test_another_frame_of_a_multi_frame_image(tmp_path):
    ds = read_dataset(real("emri_small.dcm"))
    third = display_array(ds, frame=2).astype(int)
    assert np.abs(third - dcmtk(real("emri_small.dcm"), tmp_path, "+Wm", "+F", "3")).max() <= 1
    assert np.abs(third - display_array(ds, frame=0).astype(int)).mean() > 1  # really another frame
    with pytest.raises(RenderError, match="frame 10 asked for, the image has 10"):
        display_array(ds, frame=10)


def test_monochrome1_and_the_first_of_several_windows_like_dcmtk(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 128).astype(np.uint16), (16, 1))
    ds = grey(ct("X", "Y"), ramp, "MONOCHROME1")
    ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 0, [1000, 3000], [800, 4000]
    path = write(ds, tmp_path / "mono1.dcm")
    ours = display_array(read_dataset(path)).astype(int)
    assert ours[0, 0] == 255 and ours[0, -1] == 0  # MONOCHROME1: low values bright
    assert np.abs(ours - dcmtk(path, tmp_path, "+Wi", "1")).max() <= 1
    assert np.abs(ours - dcmtk(path, tmp_path, "+Wi", "2")).max() > 50  # the second window differs


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR2_J2KR.dcm",
                                  "US1_J2KR.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_jpeg_2000_and_jpeg_ls_decode_to_the_reference_pixels(name):
    ds = read_dataset(real(name))
    reference = pydicom.dcmread(real(name)).pixel_array  # the uncompressed stored values
    if int(ds.get("NumberOfFrames", 1)) > 1:
        reference = reference[0]
    ours = display_array(ds).astype(float)
    assert ours.shape == reference.shape
    if reference.ndim == 3:
        assert np.abs(ours - reference).max() <= 1
        return
    reference = reference * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    lo, hi = reference.min(), reference.max()
    if "WindowCenter" in ds:
        c, w = first(ds.WindowCenter), first(ds.WindowWidth)
        expected = np.clip((reference - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255
    else:
        expected = (reference - lo) / (hi - lo) * 255
    assert np.abs(ours - expected).max() <= 1


def test_jpeg_file_has_the_size_and_the_pixels(tmp_path):
    target = tmp_path / "out" / "ct.jpg"
    rendered = render_jpeg(real("CT_small.dcm"), target)
    picture = np.asarray(Image.open(target)).astype(int)
    assert (rendered.width, rendered.height) == (128, 128) and picture.shape == (128, 128)
    assert np.abs(picture - display_array(read_dataset(real("CT_small.dcm")))).mean() < 2  # JPEG q90


def test_bad_files_are_named_with_their_reason(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert render_file(str(text), str(tmp_path / "a.jpg")).startswith("not a DICOM file")
    assert render_file(real("MR_truncated.dcm"), str(tmp_path / "b.jpg")).startswith("pixel data truncated")
    with pytest.warns(UserWarning, match="End of file reached"):  # pydicom's own note on the cut file
        broken = render_file(real("emri_small_jpeg_2k_lossless_too_short.dcm"), str(tmp_path / "c.jpg"))
    assert broken.startswith("truncated")
    path = write(base("X", "Y", BASIC_TEXT_SR), tmp_path / "sr.dcm")  # a whole file that is no image
    assert render_file(str(path), str(tmp_path / "d.jpg")).startswith("no pixel data")
    huge = ct("P", "N")
    huge.Rows = huge.Columns = 60000  # a header that would make the decoder allocate 7 GB
    assert render_file(str(write(huge, tmp_path / "huge.dcm")), str(tmp_path / "e.jpg")) == \
        "the image is too large to render (60000 x 60000 pixels)"
    assert not list(tmp_path.glob("*.jpg"))


def test_the_header_reader_skips_pixel_data_and_refuses_bad_uids(tmp_path):
    header = read_header(real("CT_small.dcm"))
    assert (header.rows, header.columns, header.modality) == (128, 128, "CT")
    ds = ct("P", "N")
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):  # pydicom notes it, and writes it
        ds.SOPInstanceUID = "../../etc/passwd"
        with pytest.raises(HeaderError, match="no valid SOPInstanceUID"):
            read_header(write(ds, tmp_path / "evil.dcm"))
    ds = grey(ct("P", "N"), halves(4, 4, 0, 1, np.uint8))
    del ds.PixelData
    with pytest.raises(HeaderError, match="truncated: an image without pixel data"):  # a CT cut short
        read_header(write(ds, tmp_path / "nopix.dcm"))


def both_ways(path, tmp_path):
    """(quick answer, pydicom's answer, quick JPEG pixels, pydicom's JPEG pixels) of read_and_render."""
    quick = flat_image.quick_read_and_render(str(path), str(tmp_path / "quick.jpg"))
    slow = render.read_and_render_by_pydicom(str(path), str(tmp_path / "slow.jpg"))
    pixels = [np.asarray(Image.open(tmp_path / name)) if (tmp_path / name).exists() else None
              for name in ("quick.jpg", "slow.jpg")]
    return quick, slow, *pixels


def common_images():
    """Uncompressed greyscale with a window, as PACS send them: every case the quick reader takes."""
    twelve = ct("P1", "Doe^Jane^^^")
    twelve.BitsStored, twelve.HighBit = 12, 11  # bits above HighBit set in the stored words: not pixel data
    twelve.PixelData = (np.frombuffer(twelve.PixelData, np.int16) | np.int16(-0x8000)).tobytes()
    unsigned = grey(base("P2", "Roe^R", birth="19800231"), np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1)))
    unsigned.BitsStored, unsigned.HighBit, unsigned.WindowCenter, unsigned.WindowWidth = 12, 11, 2048, 4096
    unsigned.PixelData = (np.frombuffer(unsigned.PixelData, np.uint16) | np.uint16(0xF000)).tobytes()
    eight = grey(base("P3", "", birth=""), np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)), "MONOCHROME1")
    eight.WindowCenter, eight.WindowWidth, eight.VOILUTFunction = 100, 80, "SIGMOID"
    framed = ct(" P4 ", "Poe")
    framed.NumberOfFrames, framed.RescaleSlope, framed.RescaleIntercept = 1, 2.5, -1000.5
    return {"int16, 12 bits": twelve, "uint16, 12 bits": unsigned, "uint8, MONOCHROME1, sigmoid": eight,
            "one frame, rescaled": framed}


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("case", list(common_images()))
def test_the_quick_reader_renders_what_pydicom_renders(case, implicit, tmp_path):
    ds = common_images()[case]
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    quick, slow, quick_jpeg, slow_jpeg = both_ways(write(ds, tmp_path / "image.dcm"), tmp_path)
    assert quick is not None and quick[:3] == slow[:3] and slow[2] == ""
    assert np.array_equal(quick_jpeg, slow_jpeg)
    header, pixels, entry = flat_image.quick_image((tmp_path / "image.dcm").read_bytes())
    assert np.array_equal(pixels, display_array(read_dataset(tmp_path / "image.dcm")))  # before the JPEG, too
    assert entry == read_entry(tmp_path / "image.dcm")  # and the catalog's entry, read in the same pass


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:Failed to encode")  # pydicom notes, and writes
def test_everything_else_goes_pydicoms_way(tmp_path):
    """Files the quick reader does not take it leaves whole to pydicom's way: the same answers, the same
    refusals with their reasons."""
    def variant(change):
        ds = ct("P", "N")
        change(ds)
        return ds

    others = {
        "another character set": variant(lambda ds: setattr(ds, "PatientName", "Müller^Jürgen")),
        "ISO 2022 escapes": variant(lambda ds: (setattr(ds, "SpecificCharacterSet", "ISO 2022 IR 87"),
                                                ds.add_new(0x00100010, "PN", b"Yamada^Tarou=\x1b$B;3ED\x1b(B"))),
        "two patient IDs": variant(lambda ds: setattr(ds, "PatientID", ["A", "B"])),
        "no window": variant(lambda ds: (delattr(ds, "WindowCenter"), delattr(ds, "WindowWidth"))),
        "a bad SOPInstanceUID": variant(lambda ds: setattr(ds, "SOPInstanceUID", "../../etc/passwd")),
        "pixel data cut short": variant(lambda ds: setattr(ds, "PixelData", ds.PixelData[:100])),
        "no pixel data": variant(lambda ds: delattr(ds, "PixelData")),
        "no PixelRepresentation": variant(lambda ds: delattr(ds, "PixelRepresentation")),
        "an empty BitsStored": variant(lambda ds: setattr(ds, "BitsStored", None)),
        "colour": variant(lambda ds: (setattr(ds, "SamplesPerPixel", 3), setattr(ds, "PhotometricInterpretation",
                                                                                 "RGB"))),
        "VOI LUT sequence": pydicom.dcmread(real("vlut_04.dcm")),
    }
    for name, ds in others.items():
        path = write(ds, tmp_path / f"{len(name)}.dcm") if name != "VOI LUT sequence" else real("vlut_04.dcm")
        quick, slow, _, _ = both_ways(path, tmp_path)
        assert quick is None, name
        assert render.read_and_render(str(path), str(tmp_path / "again.jpg")) == slow, name
    (tmp_path / "text.dcm").write_text("not dicom at all")
    assert flat_image.quick_read_and_render(str(tmp_path / "text.dcm"), str(tmp_path / "t.jpg")) is None
    assert render_file(str(tmp_path / "text.dcm"), str(tmp_path / "t.jpg")).startswith("not a DICOM file")
