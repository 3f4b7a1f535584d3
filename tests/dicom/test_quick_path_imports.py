"""The common image's way (flat_image.py: header, JPEG and catalog entry without pydicom) imports no pydicom,
so an import's decoder processes start without it (~0.8 s of CPU each pool start); pydicom comes in at the
first file that goes its way. Checked in a fresh interpreter: this one has pydicom loaded long ago."""
import json
import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_file

from tests.imports.tree import REAL_J2K, ct, write

ROOT = Path(__file__).resolve().parents[2]
CODE = """
import json, sys
from apps.dicom import catalog_entry, flat_image

def pydicom_loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] == "pydicom")

common, compressed, out = sys.argv[1:4]
after = {"import": pydicom_loaded()}
header, size, problem, entry = flat_image.read_and_render(common, out + "/common.jpg")
after["common"] = pydicom_loaded()
catalogued = catalog_entry.read_entry(common)
after["catalogued"] = pydicom_loaded()
other = flat_image.read_and_render(compressed, out + "/compressed.jpg")
after["compressed"] = "pydicom.pixels" in sys.modules
print(json.dumps({"after": after, "common": [header.sop_instance_uid, size, problem, entry == catalogued],
                  "compressed": [other[1], other[2]]}))
"""


def test_the_common_image_needs_no_pydicom_and_other_files_bring_it_in(tmp_path):
    ds = ct("P1", "Doe^Jane")
    common = write(ds, tmp_path / "ct.dcm")
    compressed = get_testdata_file(REAL_J2K, download=False)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CODE, str(common), compressed, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["after"] == {"import": [], "common": [], "catalogued": [], "compressed": True}
    assert answer["common"] == [ds.SOPInstanceUID, [96, 64], "", True]  # the quick way did the work
    assert answer["compressed"] == [[64, 64], ""]  # and pydicom's way still does its files
