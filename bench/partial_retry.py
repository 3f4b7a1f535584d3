"""Partial-retry benchmark: a 2,000-instance study (4 series of 500) retrieved through the portal's worker path
(C-FIND, C-MOVE into a real `manage.py receive` subprocess, filed into DOWNLOADS_DIR) from a real Orthanc; then
one series of 500 is taken out of the case folder, as after a move that failed for that series, and the row
is run again. The retry must move only the missing series: it prints the bytes the retry moved against the
bytes a full retry moves (the first run's), target <= 30 %, and both times.

    .venv/bin/python bench/partial_retry.py [--instances 2000] [--series 4] [--size 128]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import publish, scratch  # noqa: E402
from bench.retrieve import Receiver, configure_django, count_files  # noqa: E402
from tests.pacs import Orthanc, free_ports  # noqa: E402

TARGET = 0.30


def run_row(server, study_uid: str):
    """One retrieval job with one StudyInstanceUID row through the worker's entry point: (seconds, item)."""
    from apps.jobs.runner import run_item
    from apps.retrieval.models import RetrievalItem, RetrievalJob

    job = RetrievalJob.objects.create(source_name="bench", timeout=600)
    item = RetrievalItem.objects.create(job=job, line=1, dicom_server=server, server_name=server.name,
                                        study_instance_uid=study_uid)
    started = time.monotonic()
    outcome = run_item(RetrievalItem._meta.label, item.pk)
    elapsed = time.monotonic() - started
    item.refresh_from_db()
    if outcome != "succeeded":
        raise RuntimeError(f"the row ended {outcome}: {item.error}")
    return elapsed, item


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 2000)))
    parser.add_argument("--series", type=int, default=int(os.environ.get("SERIES", 4)))
    parser.add_argument("--size", type=int, default=int(os.environ.get("SIZE", 128)), help="rows = cols")
    args = parser.parse_args(argv)

    work = scratch("partial-retry")
    (receiver_port,) = free_ports(1)
    env = configure_django(work, receiver_port)
    import pydicom

    from apps.dicom.demo.synthetic import write_dataset
    from apps.servers.models import DicomServer

    per_series = args.instances // args.series
    print(f"generating {args.instances} CT instances of {args.size}x{args.size} in {args.series} series", file=sys.stderr)
    manifest = write_dataset(work / "dataset", patients=1, studies=1, series=args.series, instances=per_series,
                             rows=args.size, cols=args.size, modalities=("CT",), seed=7, id_prefix="BENCH")
    study_uid, total = manifest["studies"][0]["StudyInstanceUID"], manifest["files"]
    orthanc = Orthanc(work / "orthanc").start()
    try:
        orthanc.load(work / "dataset")
        orthanc.add_modality("BENCHPORTAL", "BENCHPORTAL", receiver_port)
        peer = orthanc.peer()
        server = DicomServer.objects.create(name="BENCHRESUME", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                            retries=0, download_timeout=600, max_associations=1)
        receiver = Receiver(env)
        try:
            full_seconds, full = run_row(server, study_uid)
            folder = Path(env["DOWNLOADS_DIR"]) / full.path
            assert count_files(folder) == total, f"{count_files(folder)} files after the full run, not {total}"
            lost_series = sorted(s["SeriesInstanceUID"] for s in manifest["studies"][0]["Series"])[0]
            lost = [p for p in folder.glob("*.dcm")
                    if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == lost_series]
            for path in lost:
                path.unlink()
            retry_seconds, retry = run_row(server, study_uid)
        finally:
            receiver.stop()
    finally:
        orthanc.stop()
    attempt = retry.result["attempts"][-1]
    if count_files(folder) != total or attempt["fetched"] != len(lost) or attempt["kept"] != total - len(lost):
        raise RuntimeError(f"the retry did not fetch exactly the missing series: {attempt}, "
                           f"{count_files(folder)} files")
    full_bytes = full.result["attempts"][-1]["bytes"]
    ratio = attempt["bytes"] / full_bytes
    verdict = "meets" if ratio <= TARGET else "MISSES"
    report = (f"# Partial retry benchmark {dt.datetime.now():%Y-%m-%d %H:%M}\n\n"
              f"One study of {total} CT instances ({args.size}x{args.size}) in {args.series} series from Orthanc on "
              f"loopback, C-MOVE into `manage.py receive`; one series of {len(lost)} taken out of the case folder, "
              f"then the row run again. {os.cpu_count()} CPUs.\n\n"
              "| run | instances moved | bytes moved | seconds |\n|---|---|---|---|\n"
              f"| full retrieval (= a full retry) | {full.result['attempts'][-1]['fetched']} | {full_bytes} | "
              f"{full_seconds:.2f} |\n"
              f"| partial retry (kept {attempt['kept']}) | {attempt['fetched']} | {attempt['bytes']} | "
              f"{retry_seconds:.2f} |\n\n"
              f"byte ratio (partial / full retry): {ratio:.1%} ({verdict} the target of <= {TARGET:.0%})\n")
    publish("partial-retry", report)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
