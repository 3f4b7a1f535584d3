"""Send benchmark: one folder (default 500 CT instances, 512x512) sent into a real Orthanc and into a
DCMTK storescp, by DCMTK storescu (TCP_NODELAY=1) and by the portal, in the same run:

- portal store_files: apps.dicom.store.store_files, the layer every send uses, one association;
- portal send job: a SendJob (apps.sending) whose batches run through the worker entry point
  (apps.jobs.runner.run_item), one waiting worker process per batch as the worker cluster would, i.e. as
  many parallel associations as the server's limit (--associations, default 2) allows.

    .venv/bin/python bench/send.py [--repeat 3] [--instances 500] [--size 512] [--associations 2]

Every variant runs REPEAT times, interleaved; between runs the receiving side is emptied (untimed).
Medians go to stdout and bench/results/send-<date>.md. DCMTK times are process wall clock.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import publish, scratch
from bench.retrieve import DCMTK_ENV, configure_django, count_files, table, timed  # noqa: E402
from tests.pacs import Orthanc, free_ports, port_open  # noqa: E402

SCP_AE = "BENCHSCP"


class StoreSCP:
    """DCMTK storescp writing what it receives into a folder."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder = port, folder
        folder.mkdir(parents=True, exist_ok=True)
        # --fork: one process per association, so parallel associations are served in parallel
        self.proc = subprocess.Popen(["storescp", "--fork", "-aet", SCP_AE, "-od", str(folder), str(port)],
                                     env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not port_open(port):
            time.sleep(0.02)

    def empty(self) -> None:
        for path in self.folder.iterdir():
            path.unlink()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def storescu(ae_title: str, port: int, folder: Path) -> float:
    return timed(["storescu", "-aec", ae_title, "-R", "-nh", "+sd", "+r", "127.0.0.1", str(port), str(folder)])


def portal_store_files(peer, folder: Path) -> float:
    from apps.dicom.peers import LocalAE
    from apps.dicom.store import store_files

    started = time.monotonic()
    report = store_files(peer, LocalAE(ae_title="BENCHPORTAL"), [folder])
    elapsed = time.monotonic() - started
    if report.failed:
        raise RuntimeError(f"store_files: {len(report.failed)} failed, first {report.failed[0]}")
    return elapsed


def portal_send_job(server, folder: Path) -> float:
    """A send job of the folder; each batch runs through run_item in a worker process of its own, as on
    the worker cluster (django-q2 workers are long-lived processes): the workers are forked and waiting
    before the clock starts, which stops when every one has reported its batch done."""
    import multiprocessing

    from django.db import connections

    from apps.sending.intake import start_send

    job = start_send(servers=[server], source=folder, root=folder, description="bench")
    items = list(job.items.values_list("pk", flat=True))
    connections.close_all()  # a forked worker must open its own database connection
    fork = multiprocessing.get_context("fork")
    go, done = fork.Event(), fork.Queue()
    workers = [fork.Process(target=_worker, args=(pk, go, done)) for pk in items]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    go.set()
    outcomes = [done.get(timeout=600) for _ in workers]
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join()
    job.refresh_from_db()
    if job.status != "succeeded":
        raise RuntimeError(f"send job ended {job.status} ({outcomes}): {job.error_summary()}")
    return elapsed


def _worker(pk: int, go, done) -> None:
    from apps.jobs.runner import run_item
    from apps.sending.models import SendItem

    SendItem.objects.filter(pk=pk).exists()  # connect to the database before the clock starts
    go.wait()
    done.put(run_item(SendItem._meta.label, pk))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 500)))
    parser.add_argument("--size", type=int, default=int(os.environ.get("SIZE", 512)), help="rows = cols")
    parser.add_argument("--associations", type=int, default=int(os.environ.get("ASSOCIATIONS", 2)),
                        help="the server's parallel association limit for the send job")
    args = parser.parse_args(argv)

    work = scratch("send")
    scp_port, unused = free_ports(2)
    configure_django(work, unused)
    from apps.dicom.demo.synthetic import write_dataset
    from apps.dicom.peers import RemoteAE
    from apps.servers.models import DicomServer

    print(f"generating {args.instances} CT instances of {args.size}x{args.size} in {work}", file=sys.stderr)
    folder = work / "dataset"
    manifest = write_dataset(folder, patients=1, studies=1, series=1, instances=args.instances, rows=args.size,
                             cols=args.size, modalities=("CT",), seed=7, id_prefix="BENCH")
    (folder / "manifest.json").unlink()
    n, megabytes = args.instances, manifest["bytes"] / 1e6
    orthanc = Orthanc(work / "orthanc").start()
    scp = StoreSCP(scp_port, work / "storescp-in")
    try:
        targets = {"Orthanc": (orthanc.aet, orthanc.dicom_port), "storescp": (SCP_AE, scp_port)}
        servers = {name: DicomServer.objects.create(name=f"B{name}", ae_title=ae, host="127.0.0.1", port=port,
                                                    retries=0, max_associations=args.associations,
                                                    download_timeout=600)
                   for name, (ae, port) in targets.items()}

        def received(name: str) -> int:
            return len(orthanc.instances()) if name == "Orthanc" else count_files(scp.folder)

        def clear(name: str) -> None:
            orthanc.delete_all() if name == "Orthanc" else scp.empty()

        storescu(orthanc.aet, orthanc.dicom_port, folder)  # warm-up: files into the page cache, Orthanc started
        results: dict[str, list[float]] = {}
        for run in range(args.repeat):
            print(f"run {run + 1}/{args.repeat}", file=sys.stderr)
            for name, (ae, port) in targets.items():
                variants = {f"DCMTK storescu -> {name}": lambda: storescu(ae, port, folder),
                            f"portal store_files -> {name}": lambda: portal_store_files(
                                RemoteAE(ae_title=ae, host="127.0.0.1", port=port, retrieve_timeout=600), folder),
                            f"portal send job ({args.associations} assoc.) -> {name}": lambda: portal_send_job(
                                servers[name], folder)}
                for label, variant in variants.items():
                    clear(name)
                    results.setdefault(label, []).append(variant())
                    if received(name) != n:
                        raise RuntimeError(f"{label}: {received(name)} instances arrived instead of {n}")
    finally:
        scp.stop()
        orthanc.stop()
    pairs = [(f"portal {kind} -> {name}", f"DCMTK storescu -> {name}") for name in ("Orthanc", "storescp")
             for kind in ("store_files", f"send job ({args.associations} assoc.)")]
    header = (f"# Send benchmark {dt.datetime.now():%Y-%m-%d %H:%M}\n\n"
              f"{n} CT instances {args.size}x{args.size}, {megabytes:.0f} MB, one folder sent over loopback, "
              f"{args.repeat} runs each (interleaved), median. {os.cpu_count()} CPUs. "
              "A ratio above 1 means the portal is faster than storescu.\n\n")
    publish("send", header + table(results, n, megabytes, pairs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
