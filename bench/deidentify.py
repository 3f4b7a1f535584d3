"""How fast each de-identification engine turns a Part-10 file's bytes into de-identified bytes.

Usage: python bench/deidentify.py [--instances 200] [--engines ours,dicognito,dicom-anonymizer,deid]
                                 [--source ct-small|synthetic]

Each engine gets the same bytes (pydicom's CT_small.dcm, a 128×128 CT with GE private tags, copied with a new
SOPInstanceUID per instance) and must hand back bytes: read, de-identify, write. The candidate libraries are
not requirements of the portal; install them into a scratch virtualenv with pydicom and run this file with
its interpreter (PYTHONPATH=. so apps.dicom imports). Engines that are not installed are skipped.
The numbers are in docs/pseudonymization.md.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
import warnings

import pydicom
from pydicom.data import get_testdata_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def instances(n: int, source: str = "ct-small") -> list[bytes]:
    if source == "synthetic":  # the CT of bench/retrieve.py: 512x512, a few public elements, no private ones
        from apps.dicom.demo.synthetic import write_dataset

        folder = tempfile.mkdtemp()
        write_dataset(folder, patients=1, instances=1, rows=512, cols=512, modalities=("CT",))
        ds = pydicom.dcmread(next(p for p in sorted(__import__("pathlib").Path(folder).rglob("*.dcm"))))
    else:
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = []
    for k in range(n):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{k + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def ours():
    from apps.dicom import deidentify as d

    recipe = d.Recipe(os.urandom(32), [d.OPTION_DATES])
    cache: dict = {}

    def patient(pid):
        if pid not in cache:
            cache[pid] = d.patient_keys(recipe.secret, "BENCH", pid, 30)
        return cache[pid]

    return lambda data: d.deidentify_bytes(data, recipe, patient).data


def _through_pydicom(change):
    def run(data):
        ds = pydicom.dcmread(io.BytesIO(data))
        change(ds)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        return out.getvalue()
    return run


def dicognito():
    from dicognito.anonymizer import Anonymizer

    return _through_pydicom(Anonymizer().anonymize)


def dicom_anonymizer():
    from dicomanonymizer import anonymize_dataset

    return _through_pydicom(lambda ds: anonymize_dataset(ds, delete_private_tags=True))


def deid():
    from deid.dicom import replace_identifiers

    logging.getLogger("deid").setLevel(logging.ERROR)
    folder = tempfile.mkdtemp()

    def run(data):  # deid works on files: the write and read are part of its cost
        src = os.path.join(folder, "in.dcm")
        with open(src, "wb") as fh:
            fh.write(data)
        ds = replace_identifiers([src], remove_private=True, save=False)[0]
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        return out.getvalue()
    return run


ENGINES = {"ours": ours, "dicognito": dicognito, "dicom-anonymizer": dicom_anonymizer, "deid": deid}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=200)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--source", choices=["ct-small", "synthetic"], default="ct-small",
                   help="pydicom's CT_small (GE, many private tags) or bench/retrieve.py's 512x512 synthetic CT")
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")
    files = instances(a.instances, a.source)
    for name in a.engines.split(","):
        try:
            engine = ENGINES[name]()
        except ImportError:
            print(f"{name:18} not installed")
            continue
        engine(files[0])  # warm up: tables, imports
        start, cpu = time.perf_counter(), time.process_time()
        size = sum(len(engine(data)) for data in files)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        # CPU time is this process's own: on a shared machine it is the steadier measure of the cost
        print(f"{name:18} {len(files) / elapsed:8.0f} instances/s wall, {len(files) / cpu:8.0f} per CPU-second  "
              f"({len(files)} in {elapsed:.2f} s, {size // len(files)} bytes out each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
