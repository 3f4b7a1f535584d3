"""The decoder pool an inline import runs (apps/imports/pool.py): forkserver processes that start without
pydicom (its import was most of their start), read the common image the quick way, send every other file
pydicom's way, and answer in the files' order what this process answers."""
import shutil
from pathlib import Path

from pydicom.data import get_testdata_file

from apps.dicom import render
from apps.imports import pool
from tests.imports.tree import REAL_J2K, REAL_RLE, ct, write

LOADED = "sorted(m for m in __import__('sys').modules if m.split('.')[0] == 'pydicom')"


def test_the_decoders_start_without_pydicom_and_answer_as_this_process_in_order(settings, tmp_path):
    settings.IMPORT_PROCESSES = 2
    pool._drop_pool()  # a pool of its own: an earlier test's decoders may have imported pydicom for their files
    pool.warm()
    sources = [write(ct(f"P{n}", "Doe^J"), tmp_path / f"{n}.dcm") for n in range(40)]
    jobs = [(str(source), str(source.with_suffix(".jpg"))) for source in sources]
    assert list(pool.render_stream(jobs)) == [render.read_and_render(s, t + ".here") for s, t in jobs]
    checks = [pool._get_pool(2).submit(eval, LOADED) for _ in range(8)]
    assert [check.result(timeout=60) for check in checks] == [[]] * 8  # the common image needed no pydicom

    others = [shutil.copy(get_testdata_file(name, download=False), tmp_path / name) for name in (REAL_J2K, REAL_RLE)]
    (tmp_path / "notes.dcm").write_text("not an image")
    mixed = sources[:5] + [others[0]] + sources[5:20] + [tmp_path / "notes.dcm"] + sources[20:] + [others[1]]
    jobs = [(str(source), str(tmp_path / f"mixed-{n}.jpg")) for n, source in enumerate(mixed)]
    answers = list(pool.render_stream(jobs))
    assert answers == [render.read_and_render(s, t + ".here") for s, t in jobs]
    assert answers[5][1] == (64, 64) and answers[21][2].startswith("not a DICOM file")  # pydicom's way, in place
    for (_, target), (_, size, _, _) in zip(jobs, answers):
        assert Path(target).exists() == bool(size)
        if size:
            assert Path(target).read_bytes() == Path(target + ".here").read_bytes()  # the same JPEG


def test_the_decoders_start_no_blas_threads(settings):
    """apps/dicom/one_blas_thread.py runs in the forkserver before numpy loads; this process is left alone."""
    import os

    settings.IMPORT_PROCESSES = 2
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # (else the check below would prove nothing)
    decoder = pool._get_pool(2).submit(os.getenv, "OPENBLAS_NUM_THREADS")
    assert decoder.result(timeout=60) == "1"
