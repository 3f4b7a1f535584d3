"""The common image's way (flat_image.py: header, JPEG and catalog entry) imports no pydicom, so an import's
decoder processes start without it (~0.8 s of CPU at each pool start). Checked in a fresh interpreter: this
one has had pydicom loaded for long."""
import json
import subprocess
import sys
from pathlib import Path

from apps.dicom.catalog_entry import read_entry
from tests.imports.tree import ct, write

ROOT = Path(__file__).resolve().parents[2]
CODE = """
import json, sys
from apps.dicom import flat_image

def pydicom_loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] == "pydicom")

loaded = {"import": pydicom_loaded()}
header, size, problem, entry = flat_image.quick_read_and_render(sys.argv[1], sys.argv[2])
loaded["read"] = pydicom_loaded()
print(json.dumps({"loaded": loaded, "answer": [header.sop_instance_uid, size, problem, entry]}))
"""


def test_the_common_image_is_read_rendered_and_catalogued_without_pydicom(tmp_path):
    ds = ct("P1", "Doe^Jane")
    common = write(ds, tmp_path / "ct.dcm")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CODE, str(common), str(tmp_path / "ct.jpg")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["loaded"] == {"import": [], "read": []}
    assert answer["answer"] == [ds.SOPInstanceUID, [96, 64], "", read_entry(common)]  # the whole work, done
    assert (tmp_path / "ct.jpg").stat().st_size > 0
