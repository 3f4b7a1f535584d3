"""Retrieval benchmark: one study (default 500 CT instances, 512x512, in 4 series) from a real Orthanc,
through the portal's worker path (apps.jobs.runner.run_item: C-FIND, C-MOVE into a real `manage.py
receive` subprocess, staged, filed into DOWNLOADS_DIR), against DCMTK movescu -> storescp in the same run.
Also C-GET: the portal's worker path with retrieve method c-get against DCMTK getscu. For each association
limit above 1, DCMTK's own parallel C-MOVE (that many lanes of series-level movescu into a forking storescp)
is measured too: what moving series in parallel can gain on this machine at all.

    .venv/bin/python bench/retrieve.py [--repeat 3] [--instances 500] [--series 4]
                                       [--receiver-processes 1,2]
                                       [--max-associations 1,2] [--no-get] [--project]

Every variant runs REPEAT times, interleaved (drift on a shared VM hits all alike); medians are
reported as a markdown table on stdout and in bench/results/retrieve-<date>.md. DCMTK times are
process wall clock; portal times run from run_item() to the item succeeded with every file filed.
With --project, the first C-MOVE variant runs again for a research project (every instance de-identified
as it is filed), and its speed relative to the plain one in the same run is reported (target >= 0.8x).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import DEPLOYED, file_system, publish, scratch  # noqa: E402
from tests.pacs import Orthanc, free_ports, port_open  # noqa: E402  (needs the repo root on sys.path)

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK leaves Nagle on otherwise (pacs-lab README)
PORTAL_AE, DCMTK_AE = "BENCHPORTAL", "BENCHSCP"


def configure_django(work: Path, receiver_port: int) -> dict:
    env = {**DEPLOYED, "DJANGO_SETTINGS_MODULE": "pacsportal.settings", "DATA_DIR": str(work / "data"),
           "STAGING_DIR": str(work / "staging"), "DOWNLOADS_DIR": str(work / "downloads"),
           "DICOM_AE_TITLE": PORTAL_AE, "DICOM_PORT": str(receiver_port), "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return {**os.environ, **env}


class Receiver:
    """`manage.py receive` as its own process, the way the portal runs it."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "receive"],
                                     env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if line.startswith(f"Receiver {PORTAL_AE}"):
                break
        else:
            raise RuntimeError("receiver did not start:\n" + "".join(seen))
        # keep reading its output so a chatty receiver never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def timed(command: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(command, env=DCMTK_ENV, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-1500:]}")
    return elapsed


def dcmtk_move(orthanc: Orthanc, study_uid: str, work: Path, port: int, expected: int) -> float:
    out = work / "storescp-in"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    scp = subprocess.Popen(["storescp", "-aet", DCMTK_AE, "-od", str(out), str(port)], env=DCMTK_ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_open(port):
            time.sleep(0.02)
        elapsed = timed(["movescu", "-S", "-aet", "BENCH", "-aec", orthanc.aet, "-aem", DCMTK_AE,
                         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                         "127.0.0.1", str(orthanc.dicom_port)])
    finally:
        scp.terminate()
        scp.wait(10)
    check(count_files(out), expected, "movescu -> storescp")
    return elapsed


def dcmtk_move_lanes(orthanc: Orthanc, study_uid: str, series_uids: list[str], work: Path, port: int,
                     expected: int, lanes: int) -> float:
    """DCMTK's own parallel C-MOVE, the reference for the portal's series in parallel: the study's series
    in `lanes` lanes of series-level movescu runs (one after the other within a lane), into one storescp
    that forks a process per association. What parallel moves can gain on this machine at all."""
    out = work / "storescp-lanes-in"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    scp = subprocess.Popen(["storescp", "--fork", "-aet", DCMTK_AE, "-od", str(out), str(port)], env=DCMTK_ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def lane(uids: list[str]) -> None:
        for uid in uids:
            timed(["movescu", "-S", "-aet", "BENCH", "-aec", orthanc.aet, "-aem", DCMTK_AE,
                   "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study_uid}",
                   "-k", f"SeriesInstanceUID={uid}", "127.0.0.1", str(orthanc.dicom_port)])

    try:
        while not port_open(port):
            time.sleep(0.02)
        threads = [threading.Thread(target=lane, args=(series_uids[k::lanes],)) for k in range(lanes)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 10  # a forked child may still be closing its last file
        while count_files(out) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(scp.pid, 15)  # storescp and the children it forked
        scp.wait(10)
    check(count_files(out), expected, f"movescu x{lanes} lanes -> storescp --fork")
    return elapsed


def dcmtk_get(orthanc: Orthanc, study_uid: str, work: Path, expected: int) -> float:
    out = work / "getscu-in"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    elapsed = timed(["getscu", "-S", "-aet", "BENCH", "-aec", orthanc.aet, "-k", "QueryRetrieveLevel=STUDY",
                     "-k", f"StudyInstanceUID={study_uid}", "-od", str(out), "127.0.0.1", str(orthanc.dicom_port)])
    check(count_files(out), expected, "getscu")
    return elapsed


def portal_retrieve(server, study_uid: str, expected: int, project=None) -> float:
    """One retrieval job with one StudyInstanceUID row, run through the worker's own entry point (for
    `project`: filed de-identified)."""
    from django.conf import settings

    from apps.catalog.filing import forget_under
    from apps.jobs.runner import run_item
    from apps.retrieval.models import RetrievalItem, RetrievalJob

    shutil.rmtree(settings.DOWNLOADS_DIR, ignore_errors=True)
    forget_under(settings.DOWNLOADS_DIR)  # as the portal's own clean-up does: each run is a first retrieval
    job = RetrievalJob.objects.create(source_name="bench", timeout=600, project=project)
    item = RetrievalItem.objects.create(job=job, line=1, dicom_server=server, server_name=server.name,
                                        study_instance_uid=study_uid)
    started = time.monotonic()
    outcome = run_item(RetrievalItem._meta.label, item.pk)
    elapsed = time.monotonic() - started
    item.refresh_from_db()
    if outcome != "succeeded":
        raise RuntimeError(f"portal {server.retrieve_method} item ended {outcome}: {item.error}")
    check(count_files(Path(settings.DOWNLOADS_DIR) / server.name), expected, f"portal {server.retrieve_method}")
    return elapsed


def creation_cost_us(folder: Path, files: int = 100) -> float:
    """Microseconds to create one empty file in `folder`, measured on `files` new ones (left there).
    On ext4 without a journal (this machine's) every creation scans past the inodes deleted in the last
    minute or more (the kernel's recently_deleted()): about 2 us on a quiet file system, about 140 us
    after the runs' own deletions, a cost storescp pays before each answer and our receiver right after
    it. Printed at both ends of a run, so a table says which state it was measured in."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i in range(files):
        os.close(os.open(folder / f"{time.monotonic_ns()}-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - started) / files * 1e6


def check(found: int, expected: int, what: str) -> None:
    if found != expected:
        raise RuntimeError(f"{what}: {found} files instead of {expected}")


def table(results: dict[str, list[float]], instances: int, megabytes: float, pairs: list[tuple[str, str]]) -> str:
    lines = ["| variant | runs (s) | median (s) | inst/s | MB/s |", "|---|---|---|---|---|"]
    for name, runs in results.items():
        median = statistics.median(runs)
        lines.append(f"| {name} | {' '.join(f'{r:.2f}' for r in runs)} | {median:.2f} | "
                     f"{instances / median:.0f} | {megabytes / median:.0f} |")
    lines += ["", "| ratio (inst/s, variant / reference) | value |", "|---|---|"]
    for portal, dcmtk in pairs:
        if portal in results and dcmtk in results:
            ratio = statistics.median(results[dcmtk]) / statistics.median(results[portal])
            lines.append(f"| {portal} / {dcmtk} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 500)))
    parser.add_argument("--series", type=int, default=int(os.environ.get("SERIES", 4)),
                        help="series in the study (a server allowing several associations moves them in parallel)")
    parser.add_argument("--series-sizes", default=os.environ.get("SERIES_SIZES", ""),
                        help="comma-separated instance counts, one per series (e.g. 100,100,300: a study of unequal "
                             "series, as real ones are); replaces --instances and --series")
    parser.add_argument("--size", type=int, default=int(os.environ.get("SIZE", 512)), help="rows = cols")
    parser.add_argument("--receiver-processes", default=os.environ.get("RECEIVER_PROCESSES_LIST", ""),
                        help="comma-separated RECEIVER_PROCESSES values to measure the C-MOVE with "
                             "(default: the setting's default)")
    parser.add_argument("--max-associations", default=os.environ.get("MAX_ASSOCIATIONS", "1,2"),
                        help="comma-separated server association limits to measure the C-MOVE with")
    parser.add_argument("--no-get", action="store_true", help="skip the C-GET variants")
    parser.add_argument("--project", action="store_true",
                        help="also the first C-MOVE variant for a research project (de-identifying as it files)")
    parser.add_argument("--settle", type=float, default=float(os.environ.get("SETTLE", 0)),
                        help="before each timed run, remove every earlier run's files, sync, and wait this many "
                             "seconds: on ext4 without a journal, creating files costs more for about a minute "
                             "after deleting some (see creation_cost_us); 60 measures each run on a quiet file "
                             "system, as on a journaled one")
    args = parser.parse_args(argv)
    sizes = [int(count) for count in args.series_sizes.split(",") if count] or [args.instances // args.series] * args.series
    args.instances, args.series = sum(sizes), len(sizes)

    work = scratch("retrieve")
    receiver_port, storescp_port = free_ports(2)
    env = configure_django(work, receiver_port)
    from apps.dicom.demo.synthetic import write_dataset
    from apps.projects.models import Project
    from apps.servers.models import DicomServer

    print(f"generating {args.instances} CT instances of {args.size}x{args.size} in series of {sizes} in {work}",
          file=sys.stderr)
    manifest = write_dataset(work / "dataset", patients=1, studies=1, instances=sizes,
                             rows=args.size, cols=args.size, modalities=("CT",), seed=7, id_prefix="BENCH")
    study_uid, megabytes = manifest["studies"][0]["StudyInstanceUID"], manifest["bytes"] / 1e6
    orthanc = Orthanc(work / "orthanc").start()
    creation = [creation_cost_us(work / "creations")]
    try:
        orthanc.load(work / "dataset")
        orthanc.add_modality(PORTAL_AE, PORTAL_AE, receiver_port)
        orthanc.add_modality(DCMTK_AE, DCMTK_AE, storescp_port)
        peer = orthanc.peer()
        common = {"ae_title": peer.ae_title, "host": peer.host, "port": peer.port, "retries": 0,
                  "download_timeout": 600}
        limits = [int(n) for n in args.max_associations.split(",") if n]
        move_servers = {n: DicomServer.objects.create(name=f"BENCHMOVE{n}", retrieve_method="c-move",
                                                      max_associations=n, **common) for n in limits}
        get_server = DicomServer.objects.create(name="BENCHGET", retrieve_method="c-get", **common)
        n = manifest["files"]
        processes = [p for p in args.receiver_processes.split(",") if p] or [""]
        moves = [(f"portal C-MOVE ({f'{p} receiver proc., ' if p else ''}{k} assoc.)", k, p)
                 for k in limits for p in processes]
        project = Project.objects.create(name="BENCH", options=["retain-longitudinal-dates"]) if args.project else None
        pseudonymized = (f"{moves[0][0]} for a project", *moves[0][1:]) if project else None
        series_uids = [s["SeriesInstanceUID"] for s in manifest["studies"][0]["Series"]]
        lanes = [k for k in limits if 1 < k <= len(series_uids)]
        # Untimed: Orthanc's files into the page cache, and the worker process's first run (imports, the
        # database connection): a portal worker is a long-running process.
        dcmtk_move(orthanc, study_uid, work, storescp_port, n)
        receiver = Receiver(env)
        try:
            portal_retrieve(move_servers[limits[0]], study_uid, n)
        finally:
            receiver.stop()
        results: dict[str, list[float]] = {}
        outputs = [work / "storescp-in", work / "storescp-lanes-in", work / "getscu-in", Path(env["DOWNLOADS_DIR"])]

        def settle() -> None:
            if args.settle:
                for folder in outputs:
                    shutil.rmtree(folder, ignore_errors=True)
                os.sync()
                time.sleep(args.settle)
                creation.append(creation_cost_us(work / "creations"))

        for run in range(args.repeat):
            print(f"run {run + 1}/{args.repeat}", file=sys.stderr)
            settle()
            results.setdefault("DCMTK movescu -> storescp", []).append(
                dcmtk_move(orthanc, study_uid, work, storescp_port, n))
            for k in lanes:
                settle()
                results.setdefault(f"DCMTK {k} lanes of series movescu -> storescp --fork", []).append(
                    dcmtk_move_lanes(orthanc, study_uid, series_uids, work, storescp_port, n, k))
            # The project's variant (a receiver of the first's kind) beside the plain ones, first in every
            # other run: what a run before leaves behind (deleted files, a warm cache) falls on both alike.
            portal_moves = [(*move, None) for move in moves] + ([(*pseudonymized, project)] if pseudonymized else [])
            for name, limit, count, for_project in portal_moves if run % 2 == 0 else portal_moves[::-1]:
                receiver = Receiver({**env, "RECEIVER_PROCESSES": count} if count else env)
                try:
                    settle()
                    results.setdefault(name, []).append(portal_retrieve(move_servers[limit], study_uid, n,
                                                                        for_project))
                finally:
                    receiver.stop()
            if not args.no_get:
                settle()
                results.setdefault("DCMTK getscu", []).append(dcmtk_get(orthanc, study_uid, work, n))
                settle()
                results.setdefault("portal C-GET", []).append(portal_retrieve(get_server, study_uid, n))
    finally:
        orthanc.stop()
    creation.append(creation_cost_us(work / "creations"))
    pairs = [(name, "DCMTK movescu -> storescp") for name, *_ in moves]
    pairs += [(f"DCMTK {k} lanes of series movescu -> storescp --fork", "DCMTK movescu -> storescp") for k in lanes]
    pairs += [(name, f"DCMTK {k} lanes of series movescu -> storescp --fork") for name, k, _ in moves if k in lanes]
    pairs += [] if args.no_get else [("portal C-GET", "DCMTK getscu")]
    pairs += [(pseudonymized[0], moves[0][0])] if pseudonymized else []  # target: >= 0.8x
    header = (f"# Retrieve benchmark {dt.datetime.now():%Y-%m-%d %H:%M}\n\n"
              f"{n} CT instances {args.size}x{args.size}, {megabytes:.0f} MB, one study of {args.series} series ({args.series_sizes or 'equal'}) from "
              f"Orthanc on loopback, "
              f"{args.repeat} runs each (interleaved), median. {os.cpu_count()} CPUs. Work folder on "
              f"{file_system(work)}; creating a file there: {creation[0]:.0f} us before the runs, {creation[-1]:.0f} us after"
              + (f"; each run after {args.settle:g} s of settling, a creation then costing "
                 f"{min(creation[1:-1]):.0f}-{max(creation[1:-1]):.0f} us" if args.settle else "") + ".\n\n")
    report = header + table(results, n, megabytes, pairs) + "\n"
    publish("retrieve", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
