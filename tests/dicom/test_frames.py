"""Frames located in the file (apps/dicom/frames.py) and one frame rendered from a large file
(render.read_frame): the bytes and pictures equal pydicom's reading of the whole file, for native and
encapsulated pixel data, little and big endian; a huge multi-frame instance is served frame by frame with
the memory of a frame; hostile files (lying headers, cut pixel data, bad offset tables) are named."""
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import pixel_array

from apps.dicom import frames, render
from apps.dicom.paths import open_regular
from tests.dicom.memory import peak_growth_mb

SAMPLES = ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
           "emri_small_jpeg_ls_lossless.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_expb_16bit_2frame.dcm",
           "examples_ybr_color.dcm", "color3d_jpeg_baseline.dcm", "rtdose.dcm", "CT_small.dcm", "MR_small_RLE.dcm"]


def stored_by_pydicom(ds) -> list[bytes]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=count))
    size = len(ds.PixelData) // count if count > 1 else len(ds.PixelData)
    length = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * ds.BitsAllocated // 8
    return [ds.PixelData[n * size:n * size + length] for n in range(count)]


def located(path):
    with open_regular(path) as fp:
        stored = frames.locate(fp, str(path))
        return stored, [stored.read(fp, n) for n in range(stored.count)]


@pytest.mark.parametrize("name", SAMPLES)
def test_each_frame_is_the_bytes_pydicom_reads(name):
    path = get_testdata_file(name)
    stored, found = located(path)
    assert found == stored_by_pydicom(pydicom.dcmread(path))
    assert stored.encapsulated == pydicom.dcmread(path).file_meta.TransferSyntaxUID.is_compressed


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm",
                                  "emri_small_jpeg_2k_lossless.dcm", "SC_rgb_rle_2frame.dcm",
                                  "examples_ybr_color.dcm", "CT_small.dcm"])
def test_a_large_files_frame_renders_as_the_whole_file_does(name, monkeypatch):
    path = get_testdata_file(name)
    whole = render.read_frame(path, 0)
    count = whole.frames
    expected = [render.display_array(whole.ds, n) for n in range(count)]
    monkeypatch.setattr(render, "LARGE_FILE_BYTES", 0)  # every file takes the large-file path
    for n in range(count):
        one = render.read_frame(path, n)
        assert one.frames == count and one.index == 0
        assert np.array_equal(one.display(), expected[n]), n
    with pytest.raises(render.NoFrame, match=f"frame {count + 1} does not exist"):
        render.read_frame(path, count)


def test_frames_split_at_jpeg_markers_when_no_table_says(tmp_path):
    """Two fragments per frame, no Basic Offset Table: frames end at the fragments ending with EOI."""
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    originals = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ds.PixelData = encapsulate(originals, fragments_per_frame=2, has_bot=False)
    path = tmp_path / "split.dcm"
    ds.save_as(path)
    stored, found = located(path)
    assert stored.count == len(originals) and found == originals


def write(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_header_that_lies_about_its_frames_is_named(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    ds.NumberOfFrames = 11  # one more than the pixel data holds
    with pytest.raises(frames.FrameError, match="holds 81920 bytes; 11 frames of 64 x 64 need 90112"):
        located(write(ds, tmp_path / "more.dcm"))
    ds.NumberOfFrames = 3
    stored, found = located(write(ds, tmp_path / "fewer.dcm"))  # fewer: those it names are there
    assert stored.count == 3 and len(found[2]) == 64 * 64 * 2
    with pytest.raises(frames.NoSuchFrame, match="frame 4 does not exist"):
        stored.pieces(3)
    ds.NumberOfFrames = 0
    with pytest.raises(frames.FrameError, match="NumberOfFrames is 0"):
        located(write(ds, tmp_path / "zero.dcm"))
    rle = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    rle.NumberOfFrames = 40  # more frames than its offset table lists
    with pytest.raises(frames.FrameError, match="the offset table lists 10 frames; NumberOfFrames says 40"):
        located(write(rle, tmp_path / "rle.dcm"))
    rle.PixelData = encapsulate(list(generate_frames(rle.PixelData, number_of_frames=10)), has_bot=False)
    with pytest.raises(frames.FrameError, match="10 fragments for 40 frames"):  # and without a table
        located(write(rle, tmp_path / "rle_no_table.dcm"))


def test_a_basic_offset_table_naming_no_fragment_is_refused(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    pieces = list(generate_frames(ds.PixelData, number_of_frames=10))
    data = bytearray(encapsulate(pieces, has_bot=True))
    struct.pack_into("<L", data, 12, 3)  # the second frame's offset points inside the first fragment
    ds.PixelData = bytes(data)
    with pytest.raises(frames.FrameError, match="no fragment starts"):
        located(write(ds, tmp_path / "bot.dcm"))
    data[4:8] = struct.pack("<L", 4 * 1000)  # a table longer than the fragments it could index
    ds.PixelData = bytes(data[:8] + b"\0" * 4000 + data[8 + 40:])
    with pytest.raises(frames.FrameError, match="malformed"):
        located(write(ds, tmp_path / "long.dcm"))


def test_a_cut_file_is_named_not_read_past(tmp_path):
    source = Path(get_testdata_file("emri_small.dcm")).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(source[:-5000])
    with pytest.raises(frames.FrameError, match="truncated: the pixel data needs 81920 bytes"):
        located(tmp_path / "cut.dcm")
    rle = Path(get_testdata_file("emri_small_RLE.dcm")).read_bytes()
    (tmp_path / "cut_rle.dcm").write_bytes(rle[:-3000])
    with pytest.raises(frames.FrameError, match="truncated: a pixel data fragment needs"):
        located(tmp_path / "cut_rle.dcm")
    (tmp_path / "nopixels.dcm").write_bytes(source[:1200])
    with pytest.raises(frames.FrameError, match="truncated"):
        located(tmp_path / "nopixels.dcm")


def test_a_huge_instances_last_frames_come_with_the_memory_of_a_frame(huge, tmp_path):
    path, ds = huge
    size = path.stat().st_size
    with peak_growth_mb() as imported:  # what a folder import does with each file: header and first frame's JPEG
        header, picture_size, problem, _ = render.read_and_render(str(path), str(tmp_path / "first.jpg"))
    assert problem == "" and picture_size == (512, 512) and header.frames == ds.NumberOfFrames
    assert header.sop_instance_uid == ds.SOPInstanceUID and (tmp_path / "first.jpg").stat().st_size > 1000
    assert imported.mb < 40, f"the import's read grew {imported.mb:.0f} MB"
    with peak_growth_mb() as growth:
        with open_regular(path) as fp:
            stored = frames.locate(fp, str(path))
            last = stored.read(fp, ds.NumberOfFrames - 1)
        picture = render.read_frame(path, ds.NumberOfFrames - 2)
        shown = picture.display()
    print(f"a frame of {size / 1e6:.0f} MB located, read and rendered: peak RSS grew {growth.mb:.1f} MB")
    assert stored.count == picture.frames == ds.NumberOfFrames
    assert np.array_equal(np.frombuffer(last, "<u2").reshape(512, 512) & 0x0FFF,  # BitsStored 12
                          pixel_array(str(path), index=ds.NumberOfFrames - 1))  # pydicom reading that frame
    expected = pixel_array(str(path), index=ds.NumberOfFrames - 2)
    assert np.array_equal(picture.ds.pixel_array, expected)
    assert shown.shape == (512, 512) and shown.dtype == np.uint8
    assert growth.mb < 40, f"{growth.mb:.0f} MB for a {size / 1e6:.0f} MB file"
