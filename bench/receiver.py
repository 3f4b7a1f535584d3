"""Receiver benchmark: the real `manage.py receive` process, (1) its throughput, DCMTK storescu sending one
study (default 500 CT instances, 512x512) on one association, against DCMTK storescp in the same run,
(2) what 200 hostile connections announcing large PDUs cost it (RSS before and during, associations
refused, how long the stalled peers kept their connections), and (3) one huge multi-frame instance
(`--huge-mb`, default 2000; 0 skips it), generated into the scratch folder: storescu to the receiver
(its peak RSS growth, VmHWM, and MB/s), a C-GET of it from Orthanc through the portal's C-GET SCU and
staging writes (this process's peak RSS growth, sampled, and MB/s), and a C-MOVE of it from Orthanc into a
one-process receiver as a retrieval row runs it (the receiver's peak RSS growth, VmHWM, and MB/s), beside
the CT study's MB/s.

    .venv/bin/python bench/receiver.py [--repeat 3] [--instances 500] [--huge-mb 2000] [--baseline DIR]

`--baseline DIR` also measures the receiver of another checkout of this project (say `git archive main`
unpacked into DIR), interleaved with this one, so a change to the receiver is compared in one run.
Output: markdown on stdout and in bench/results/receiver-<date>.md (git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import publish, scratch  # noqa: E402
from tests.pacs import free_ports, port_open  # noqa: E402  (needs the repo root on sys.path)
from tests.servers.hostile import attack, rss_bytes  # noqa: E402

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
AE = "BENCHRCV"
PDU_TIMEOUT = 2


class Receiver:
    """`manage.py receive` of the checkout at `tree`, as its own process, output to a file."""

    def __init__(self, tree: Path, work: Path, port: int, processes: int = 0):
        self.staging = work / "staging"
        shutil.rmtree(self.staging, ignore_errors=True)
        data = work / f"data-{abs(hash(str(tree)))}"  # a database of its own per checkout, migrated once
        env = {**os.environ, "DEBUG": "1", "DATA_DIR": str(data), "STAGING_DIR": str(self.staging),
               "DICOM_AE_TITLE": AE, "DICOM_PORT": str(port), "LOG_LEVEL": "WARNING",
               "RECEIVER_PDU_TIMEOUT": str(PDU_TIMEOUT), "DJANGO_SETTINGS_MODULE": "pacsportal.settings",
               # storescu's plain C-STOREs (no C-MOVE, so no move key) kept under a quota, as a receiver
               # configured to keep them does; the hostile peers use a title the receiver knows
               "RECEIVER_ALLOWED_AE_TITLES": "STORESCU,HOSTILE", "RECEIVER_KEEP_UNSOLICITED_MB": "100000",
               **({"RECEIVER_PROCESSES": str(processes)} if processes else {})}
        if not data.exists():
            subprocess.run([sys.executable, str(tree / "manage.py"), "migrate", "--noinput"], env=env, cwd=tree,
                           check=True, capture_output=True, timeout=300)
        log = work / "receiver.log"
        self.proc = subprocess.Popen([sys.executable, str(tree / "manage.py"), "receive"], env=env, cwd=tree,
                                     stdout=log.open("w"), stderr=subprocess.STDOUT)
        while f"Receiver {AE} on" not in log.read_text():
            if self.proc.poll() is not None:
                raise RuntimeError("receiver did not start:\n" + log.read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def storescu(port: int, called: str, dataset: Path) -> float:
    files = sorted(str(p) for p in dataset.rglob("*.dcm"))
    started = time.monotonic()
    done = subprocess.run(["storescu", "-aec", called, "127.0.0.1", str(port), *files], env=DCMTK_ENV,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed ({done.returncode}): {done.stderr[-1500:]}")
    return time.monotonic() - started


def dcmtk_store(dataset: Path, work: Path, port: int, expected: int) -> float:
    out = work / "storescp-in"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    scp = subprocess.Popen(["storescp", "-aet", "REF", "-od", str(out), str(port)], env=DCMTK_ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_open(port):
            time.sleep(0.02)
        elapsed = storescu(port, "REF", dataset)
    finally:
        scp.terminate()
        scp.wait(10)
    check(count_files(out), expected, "storescp")
    return elapsed


def receiver_store(tree: Path, dataset: Path, work: Path, port: int, expected: int) -> float:
    receiver = Receiver(tree, work, port)
    try:
        elapsed = storescu(port, AE, dataset)
    finally:
        receiver.stop()
    check(count_files(receiver.staging), expected, f"receiver of {tree}")
    return elapsed


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def huge_store(tree: Path, folder: Path, work: Path, port: int) -> tuple[float, float]:
    """storescu of the huge instance to a one-process receiver: (seconds, peak RSS growth in MB)."""
    receiver = Receiver(tree, work, port, processes=1)
    try:
        before = status_kb(receiver.proc.pid, "VmRSS")
        elapsed = storescu(port, AE, folder)
        growth = (status_kb(receiver.proc.pid, "VmHWM") - before) / 1024
    finally:
        receiver.stop()
    check(count_files(receiver.staging), 1, f"receiver of {tree}")
    return elapsed, growth


def huge_get(folder: Path, work: Path) -> tuple[float, float]:
    """The huge instance loaded into an Orthanc, then a C-GET of its study by the portal's C-GET SCU staging
    it as a retrieval does (apps/retrieval/retrieve._c_get_into's writes): (seconds, peak RSS growth in MB)."""
    import pydicom

    from apps.dicom.peers import LocalAE
    from apps.dicom.scu import c_get
    from apps.dicom.staging import AnsweredWrites
    from tests.pacs import Orthanc

    orthanc = Orthanc(work / "orthanc").start()
    try:
        orthanc.load(folder)
        study = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
        staged = work / "c-get"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        peak, done = [0], threading.Event()

        def watch():
            while not done.wait(0.05):
                peak[0] = max(peak[0], status_kb(os.getpid(), "VmRSS"))

        before = status_kb(os.getpid(), "VmRSS")
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        with AnsweredWrites() as writes:
            result = c_get(orthanc.peer(retrieve_timeout=3600), LocalAE(ae_title="BENCHGET", port=0),
                           {"StudyInstanceUID": study}, lambda instance: writes.take(instance, staged, staged) or 0)
        elapsed = time.monotonic() - started
        done.set()
        watcher.join()
        check(count_files(staged), 1, f"C-GET ({result})")
        return elapsed, (peak[0] - before) / 1024
    finally:
        orthanc.stop()


def huge_move(folder: Path, work: Path, port: int, storescp_port: int, repeat: int) -> dict[str, list]:
    """The huge instance loaded into an Orthanc, then retrieved `repeat` times as a case-list row is, through
    the worker's own entry point (bench/retrieve.py's portal_retrieve: C-FIND, C-MOVE into a one-process
    `manage.py receive`, staged, filed), interleaved with DCMTK movescu -> storescp from the same Orthanc:
    {variant: [(seconds, the receiver's peak RSS growth in MB, or None for DCMTK), ...]}."""
    import pydicom

    from bench.retrieve import DCMTK_AE, PORTAL_AE, configure_django, dcmtk_move, portal_retrieve
    from bench.retrieve import Receiver as PortalReceiver
    from tests.pacs import Orthanc

    env = {**configure_django(work / "c-move", port), "RECEIVER_PROCESSES": "1"}
    from apps.servers.models import DicomServer

    orthanc = Orthanc(work / "orthanc-move").start()
    try:
        orthanc.load(folder)
        orthanc.add_modality(PORTAL_AE, PORTAL_AE, port)
        orthanc.add_modality(DCMTK_AE, DCMTK_AE, storescp_port)
        peer = orthanc.peer()
        server = DicomServer.objects.create(name="BENCHHUGE", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                            retrieve_method="c-move", retries=0, download_timeout=3600)
        study = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
        dcmtk = "C-MOVE from Orthanc, DCMTK movescu -> storescp (reference)"
        portal = "C-MOVE from Orthanc into manage.py receive, a retrieval row (C-FIND, move, filing)"
        results = {dcmtk: [], portal: []}
        for run in range(repeat):
            print(f"huge instance by C-MOVE, run {run + 1}/{repeat}", file=sys.stderr)
            results[dcmtk].append((dcmtk_move(orthanc, study, work, storescp_port, 1), None))
            shutil.rmtree(work / "storescp-in", ignore_errors=True)
            receiver = PortalReceiver(env)
            try:
                before = status_kb(receiver.proc.pid, "VmRSS")
                elapsed = portal_retrieve(server, study, 1)
                results[portal].append((elapsed, (status_kb(receiver.proc.pid, "VmHWM") - before) / 1024))
            finally:
                receiver.stop()
        return results
    finally:
        orthanc.stop()


def hostile(tree: Path, work: Path, port: int) -> dict:
    receiver = Receiver(tree, work, port)
    try:
        subprocess.run(["echoscu", "-aet", "STORESCU", "-aec", AE, "127.0.0.1", str(port)], check=True, capture_output=True, timeout=30)
        before = rss_bytes(receiver.proc.pid)
        found = attack("127.0.0.1", port, AE, large_p_data=100, large_requests=100)
        time.sleep(1)
        during = rss_bytes(receiver.proc.pid)
        started = time.monotonic()
        cut = found.all_cut(timeout=3 * PDU_TIMEOUT + 5)
        held = time.monotonic() - started
        found.close()
        return {"before": before, "during": during, "associated": found.associated, "refused": len(found.refusals),
                "cut": f"{held:.1f} s" if cut else f"not within {held:.0f} s"}
    finally:
        receiver.stop()


def pdu_reads(tree: Path, size: int, count: int = 2000) -> float:
    """Microseconds per `read_pdu` of one `size`-byte P-DATA-TF over a socketpair, with `tree`'s wire/pdu.py."""
    spec = importlib.util.spec_from_file_location(f"pdu_{abs(hash(str(tree)))}", tree / "apps/dicom/wire/pdu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    ours, theirs = socket.socketpair()
    ours.settimeout(60)  # as the receiver's sockets: the PDU timeout
    payload = struct.pack(">BBL", 4, 0, size) + b"x" * size
    sender = threading.Thread(target=lambda: [theirs.sendall(payload) for _ in range(count)])
    sender.start()
    started = time.perf_counter()
    for _ in range(count):
        module.read_pdu(ours, 4 * 1024 * 1024 + 6)
    elapsed = time.perf_counter() - started
    sender.join()
    ours.close()
    theirs.close()
    return elapsed * 1e6 / count


def _peak(results: list[tuple[float, float | None]]) -> str:
    growths = [g for _, g in results if g is not None]
    return f"{max(growths):.0f}" if growths else "–"


def check(found: int, expected: int, what: str) -> None:
    if found != expected:
        raise RuntimeError(f"{what}: {found} files instead of {expected}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 500)))
    parser.add_argument("--size", type=int, default=int(os.environ.get("SIZE", 512)), help="rows = cols")
    parser.add_argument("--huge-mb", type=int, default=int(os.environ.get("HUGE_MB", 2000)),
                        help="one multi-frame instance this large, stored and got (0: skip)")
    parser.add_argument("--baseline", type=Path, default=os.environ.get("BASELINE"),
                        help="another checkout whose receiver to measure alongside")
    args = parser.parse_args(argv)

    work = scratch("receiver")
    receiver_port, storescp_port = free_ports(2)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsportal.settings")
    from apps.dicom.demo.synthetic import write_dataset

    print(f"generating {args.instances} CT instances of {args.size}x{args.size} in {work}", file=sys.stderr)
    manifest = write_dataset(work / "dataset", patients=1, studies=1, series=1, instances=args.instances,
                             rows=args.size, cols=args.size, modalities=("CT",), seed=7, id_prefix="BENCH")
    n, megabytes = args.instances, manifest["bytes"] / 1e6
    trees = {"this checkout": ROOT}
    if args.baseline:
        trees[f"baseline ({args.baseline})"] = args.baseline.resolve()
    dcmtk_store(work / "dataset", work, storescp_port, n)  # warm-up: the files into the page cache
    runs: dict[str, list[float]] = {}
    for run in range(args.repeat):
        print(f"run {run + 1}/{args.repeat}", file=sys.stderr)
        runs.setdefault("DCMTK storescu -> storescp", []).append(dcmtk_store(work / "dataset", work, storescp_port, n))
        for name, tree in trees.items():
            runs.setdefault(f"storescu -> manage.py receive, {name}", []).append(
                receiver_store(tree, work / "dataset", work, receiver_port, n))
    attacks = {name: hostile(tree, work, receiver_port) for name, tree in trees.items()}
    huge: dict[str, list[tuple[float, float]]] = {}
    if args.huge_mb:
        from apps.dicom.demo.huge import write_huge_instance

        folder = work / "huge"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        print(f"generating one {args.huge_mb} MB multi-frame instance", file=sys.stderr)
        write_huge_instance(folder / "huge.dcm", args.huge_mb)
        huge_bytes = (folder / "huge.dcm").stat().st_size
        for run in range(args.repeat):
            print(f"huge instance, run {run + 1}/{args.repeat}", file=sys.stderr)
            for name, tree in trees.items():
                huge.setdefault(f"storescu -> manage.py receive, {name}", []).append(
                    huge_store(tree, folder, work, receiver_port))
                shutil.rmtree(work / "staging", ignore_errors=True)
        huge["C-GET from Orthanc, this checkout's C-GET SCU and staging"] = [huge_get(folder, work)
                                                                             for _ in range(args.repeat)]
        huge.update(huge_move(folder, work, receiver_port, storescp_port, args.repeat))
    reads = {(name, size): [] for name in trees for size in (16384, 131066, 524588)}
    for _ in range(7):  # interleaved; the minimum is the figure least disturbed by other work
        for name, size in reads:
            reads[(name, size)].append(pdu_reads(trees[name], size))

    reference = statistics.median(runs["DCMTK storescu -> storescp"])
    lines = [f"# Receiver benchmark {dt.datetime.now():%Y-%m-%d %H:%M}", "",
             f"{n} CT instances {args.size}x{args.size}, {megabytes:.0f} MB, storescu on one association over "
             f"loopback, {args.repeat} runs each (interleaved), median. {os.cpu_count()} CPUs.", "",
             "| variant | runs (s) | median (s) | best (s) | inst/s (median) | vs storescp (median) |",
             "|---|---|---|---|---|---|"]
    for name, times in runs.items():
        median = statistics.median(times)
        lines.append(f"| {name} | {' '.join(f'{t:.2f}' for t in times)} | {median:.2f} | {min(times):.2f} | "
                     f"{n / median:.0f} | {reference / median:.2f}x |")
    lines += ["", "200 hostile connections: 100 associate and announce a 4 MB P-DATA-TF, 100 announce a 1 MB "
              f"A-ASSOCIATE-RQ; each sends 10 bytes and stalls (RECEIVER_PDU_TIMEOUT={PDU_TIMEOUT}).", "",
              "| receiver | RSS before (MB) | RSS with 200 hostile (MB) | associated | refused | stalled peers cut |",
              "|---|---|---|---|---|---|"]
    for name, a in attacks.items():
        lines.append(f"| {name} | {a['before'] / 2**20:.0f} | {a['during'] / 2**20:.0f} | {a['associated']} | "
                     f"{a['refused']} | {a['cut']} |")
    if huge:
        study_mbs = megabytes / statistics.median(runs["storescu -> manage.py receive, this checkout"])
        lines += ["", f"One multi-frame instance of {huge_bytes / 1e6:.0f} MB ({args.repeat} runs each, median), "
                  f"beside the CT study above through the receiver at {study_mbs:.0f} MB/s:", "",
                  "| path | runs (s) | MB/s (median) | vs the CT study's MB/s | peak RSS growth (MB, max) |",
                  "|---|---|---|---|---|"]
        for name, results in huge.items():
            median = statistics.median(t for t, _ in results)
            rate = huge_bytes / 1e6 / median
            lines.append(f"| {name} | {' '.join(f'{t:.1f}' for t, _ in results)} | {rate:.0f} | "
                         f"{rate / study_mbs:.2f}x | {_peak(results)} |")
    lines += ["", "`read_pdu` in process (a socketpair, 2000 PDUs, 7 rounds interleaved):", "",
              "| wire/pdu.py of | PDU bytes | min us/PDU | median us/PDU |", "|---|---|---|---|"]
    for (name, size), times in reads.items():
        lines.append(f"| {name} | {size} | {min(times):.1f} | {statistics.median(times):.1f} |")
    report = "\n".join(lines) + "\n"
    publish("receiver", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
