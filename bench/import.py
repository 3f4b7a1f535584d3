"""Folder-import benchmark: FILES CT images 512x512 (int16, a noisy phantom so JPEG encoding costs what
it costs on real slices) in the import service's YYYY-MM/<PatientID>/ layout, imported through the portal and,
in the same run, through a bare one-process loop (pydicom read + window + Pillow JPEG save).

    .venv/bin/python bench/import.py [--files 2000] [--size 512] [--modes inline,cluster]

Modes: `inline` is `manage.py import_dicom`'s path (items run in this process, decoding in a process
pool of IMPORT_PROCESSES); `cluster` starts `manage.py qcluster` (Q_WORKERS workers, each batch
rendered in its worker). Each first import starts from an empty database and JPEG folder; the
re-import runs over the unchanged tree right after. Rounds are interleaved (bare, then each mode) and
medians reported: images/s, files/s and the ratios, also written to bench/results/import-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import DEPLOYED, file_system  # noqa: E402  (needs the repo root on sys.path)


def make_tree(source: Path, files: int, size: int) -> list[Path]:
    from tests.imports.tree import ct, write

    rng = np.random.default_rng(7)
    y, x = np.ogrid[-1:1:size * 1j, -1:1:size * 1j]
    body = ((x / 0.8) ** 2 + (y / 0.65) ** 2 <= 1.0)
    paths = []
    patients = max(1, files // 100)
    for n in range(files):
        month, patient = f"2024-{1 + n % 3:02d}", f"BENCH{n % patients:04d}"
        ds = ct(patient, f"Bench^{n % patients}", rows=size, cols=size)
        hu = np.where(body, 40 + 30 * np.sin(n / 7 + x * 6) * np.cos(y * 5), -1000) + rng.normal(0, 12, body.shape)
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype(np.int16).tobytes()
        paths.append(write(ds, source / month / patient / f"IMG{n:05d}.dcm"))
    return paths


def bare_loop(paths: list[Path], out: Path) -> float:
    """What a script without the portal does: one process, pydicom + numpy window + Pillow."""
    import pydicom
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        center, width = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
        lo = center - width / 2
        pixels = ((np.clip(hu, lo, lo + width) - lo) / width * 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"{i}.jpg", "JPEG", quality=90)
    return time.monotonic() - started


def configure_django(work: Path, source_root: Path) -> dict:
    env = {**DEPLOYED, "DJANGO_SETTINGS_MODULE": "pacsportal.settings", "DATA_DIR": str(work / "data"),
           "IMPORT_ROOTS": str(source_root), "IMPORT_JPG_DIR": str(work / "jpg"), "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return {**os.environ, **env}


def forget_everything(work: Path) -> None:
    from apps.imports.models import ImportedImage, ImportedPatient, ImportJob, KnownFile

    KnownFile.objects.all().delete()
    ImportJob.objects.all().delete()
    ImportedImage.objects.all().delete()
    ImportedPatient.objects.all().delete()
    shutil.rmtree(work / "jpg", ignore_errors=True)


CPU = {"bare": [], "inline first": []}  # CPU seconds per run: robust to other load on a shared machine


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool_cpu() -> float:
    from apps.imports import pool

    return sum(process_cpu(pid) for pid in (pool._pool._processes if pool._pool else {}))


def import_inline(source: Path) -> tuple[float, dict]:
    from apps.imports.intake import create_import
    from apps.jobs.runner import run_inline

    cpu = time.process_time() + pool_cpu()
    started = time.monotonic()
    job = run_inline(create_import(str(source), run_inline=True))
    elapsed = time.monotonic() - started
    if job.counts()["new_images_uploaded"]:
        CPU["inline first"].append(time.process_time() + pool_cpu() - cpu)
    return elapsed, job.counts()


def import_cluster(source: Path, env: dict, work: Path) -> tuple[float, dict]:
    from apps.imports.intake import start_import

    log = open(work / "qcluster.log", "ab")
    cluster = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(3)  # let the workers start: the figure is the import, not the cluster's boot
        started = time.monotonic()
        job = start_import(str(source))
        while job.status in ("pending", "running"):
            time.sleep(0.01)  # the benchmark's own resolution: a re-import takes about a tenth of a second
            job.refresh_from_db()
        return time.monotonic() - started, job.counts()
    finally:
        cluster.terminate()
        cluster.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--modes", default="inline,cluster")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    source_root = work / "roots"
    source = source_root / "dicom"
    try:
        t = time.monotonic()
        paths = make_tree(source, args.files, args.size)
        print(f"generated {len(paths)} CT files {args.size}x{args.size} in {time.monotonic() - t:.1f} s "
              f"({sum(p.stat().st_size for p in paths) / 1e6:.0f} MB) on {os.cpu_count()} cores")
        env = configure_django(work, source_root)
        modes = [m for m in args.modes.split(",") if m]
        times = {"bare": [], **{f"{m} first": [] for m in modes}, **{f"{m} again": [] for m in modes}}
        for round_ in range(args.repeat):  # interleaved: drift on a shared machine hits every variant alike
            shutil.rmtree(work / "bare", ignore_errors=True)
            cpu = time.process_time()
            times["bare"].append(bare_loop(paths, work / "bare"))
            CPU["bare"].append(time.process_time() - cpu)
            for mode in modes:
                forget_everything(work)
                run = import_inline if mode == "inline" else lambda src: import_cluster(src, env, work)
                first, counts = run(source)
                assert counts["new_images_uploaded"] == len(paths), counts
                again, counts = run(source)
                assert counts["duplicate_images_skipped"] == len(paths), counts
                times[f"{mode} first"].append(first)
                times[f"{mode} again"].append(again)
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()))
        median = {key: statistics.median(values) for key, values in times.items()}
        bare_ips = len(paths) / median["bare"]
        rows = [("bare loop (1 process: pydicom + window + Pillow)", median["bare"], bare_ips, "1.00x bare")]
        for mode in modes:
            first_ips, again_fps = len(paths) / median[f"{mode} first"], len(paths) / median[f"{mode} again"]
            # Each round's own ratio too: bare loop and import ran back to back, under the same load.
            round_first = statistics.median(b / f for b, f in zip(times["bare"], times[f"{mode} first"]))
            round_again = statistics.median(f / a for f, a in zip(times[f"{mode} first"], times[f"{mode} again"]))
            rows.append((f"first import, {mode}", median[f"{mode} first"], first_ips,
                         f"{first_ips / bare_ips:.2f}x bare (per round: {round_first:.2f}x)"))
            rows.append((f"re-import, {mode}", median[f"{mode} again"], again_fps,
                         f"{again_fps / first_ips:.1f}x first import (per round: {round_again:.1f}x)"))
        table = ["| run (median of rounds) | seconds | per second | ratio |", "|---|---|---|---|"]
        table += [f"| {name} | {seconds:.3f} | {rate:.0f} | {ratio} |" for name, seconds, rate, ratio in rows]
        cpu_ms = {key: statistics.median(values) / len(paths) * 1000 for key, values in CPU.items() if values}
        if len(cpu_ms) == 2:
            table += ["", f"CPU per image (all processes, median): bare loop {cpu_ms['bare']:.2f} ms, first import "
                      f"inline {cpu_ms['inline first']:.2f} ms (this process and the decoder pool); on "
                      f"{os.cpu_count()} idle cores the import could reach "
                      f"{os.cpu_count() * cpu_ms['bare'] / cpu_ms['inline first']:.2f}x the bare loop."]
        report = "\n".join([f"# Import benchmark {dt.datetime.now():%Y-%m-%d %H:%M}",
                            f"{len(paths)} CT files {args.size}x{args.size}, {os.cpu_count()} cores "
                            f"(load average {os.getloadavg()[0]:.1f}), {args.repeat} rounds, files on "
                            f"{file_system(work)}, "
                            f"IMPORT_PROCESSES={os.environ.get('IMPORT_PROCESSES', os.cpu_count())}, "
                            f"IMPORT_BATCH_SIZE={os.environ.get('IMPORT_BATCH_SIZE', 'default')}", "", *table, ""])
        print(report)
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / f"import-{dt.datetime.now():%Y%m%d-%H%M}.md").write_text(report)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
