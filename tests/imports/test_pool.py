"""The decoder pool an inline import runs (apps/imports/pool.py): forkserver processes that start without
pydicom (its import was most of their start) and answer what the in-process path answers."""
from apps.dicom import flat_image
from apps.imports import pool
from tests.imports.tree import ct, write

LOADED = "sorted(m for m in __import__('sys').modules if m.split('.')[0] == 'pydicom')"


def test_the_decoders_start_without_pydicom_and_decode_the_common_image_as_this_process(settings, tmp_path):
    settings.IMPORT_PROCESSES = 2
    pool._drop_pool()  # a pool of its own: an earlier test's decoders may have imported pydicom for their files
    pool.warm()
    jobs = [(str(write(ct(f"P{n}", "Doe^J"), tmp_path / f"{n}.dcm")), str(tmp_path / f"{n}.jpg")) for n in range(40)]
    decoded = list(pool.render_stream(jobs))
    assert len(pool._get_pool(2)._processes) == 2
    here = [flat_image.read_and_render(source, target + ".here") for source, target in jobs]
    assert decoded == here and all(entry is not None for _, _, _, entry in decoded)
    for _, target in jobs:
        assert open(target, "rb").read() == open(target + ".here", "rb").read()  # the same JPEG bytes
    checks = [pool._get_pool(2).submit(eval, LOADED) for _ in range(8)]
    assert [check.result(timeout=60) for check in checks] == [[]] * 8
