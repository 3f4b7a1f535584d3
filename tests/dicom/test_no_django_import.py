"""apps/dicom is a plain library (docs/architecture.md): importing any of it must not pull in Django."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "apps" / "dicom"
SOURCES = sorted(PACKAGE.rglob("*.py"))  # every module, wire/ and demo/ included
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts[:-1] if p.stem == "__init__" else
                          p.relative_to(ROOT).with_suffix("").parts) for p in SOURCES)


def test_the_module_list_is_not_empty():
    assert {"apps.dicom.dimse", "apps.dicom.dicomweb", "apps.dicom.peers", "apps.dicom.supervisor",
            "apps.dicom.wire", "apps.dicom.wire.storage_scp", "apps.dicom.demo.qrscp"} <= set(MODULES)


def test_importing_every_dicom_module_leaves_django_unloaded():
    code = ("import importlib, sys\n"
            f"for name in {MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
            "print('DJANGO:' + ','.join(loaded))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE either
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "DJANGO:\n" in done.stdout, done.stdout


def test_no_dicom_source_file_mentions_a_django_import():
    pattern = re.compile(r"^\s*(from|import)\s+(django|rest_framework|django_q|apps\.(?!dicom\b))", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if pattern.search(p.read_text())]
    assert offenders == []
