"""Where a C-MOVE's CPU goes: CPU seconds of Orthanc, the receiving side and the requesting side for one
study, the portal's worker path (the lean receiver, the socket-level C-MOVE requestor; 1 and 2
associations) against DCMTK movescu -> storescp, in the same run.

On a shared 2-core machine wall clock follows the load of everyone else; CPU seconds per process do not,
and they say which side to make cheaper. Read from /proc/<pid>/stat (Orthanc, storescp, the receiver)
and getrusage (movescu as a waited child, the worker as this process).

    .venv/bin/python bench/retrieve_cpu.py [--repeat 3] [--instances 500] [--series 4]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import retrieve as bench  # noqa: E402  (bench/retrieve.py: the rig, the receiver, the worker path)


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of_tree(pid: int) -> float:
    """CPU seconds of a process and of its running descendants: `manage.py receive` serves from child
    processes (RECEIVER_PROCESSES), and its own figure alone was near zero."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return cpu_of(pid) + sum(cpu_of_tree(child) for child in children)


def rusage(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def dcmtk(orthanc, study_uid: str, work: Path, port: int) -> tuple[float, float, float, float]:
    out = work / "storescp-in"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    scp = subprocess.Popen(["storescp", "-aet", bench.DCMTK_AE, "-od", str(out), str(port)], env=bench.DCMTK_ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not bench.port_open(port):
            time.sleep(0.02)
        pacs, children, started = cpu_of(orthanc.process.pid), rusage(resource.RUSAGE_CHILDREN), time.monotonic()
        bench.timed(["movescu", "-S", "-aet", "BENCH", "-aec", orthanc.aet, "-aem", bench.DCMTK_AE,
                     "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                     "127.0.0.1", str(orthanc.dicom_port)])
        return (time.monotonic() - started, cpu_of(orthanc.process.pid) - pacs, cpu_of(scp.pid),
                rusage(resource.RUSAGE_CHILDREN) - children)
    finally:
        scp.terminate()
        scp.wait(10)


def portal(orthanc, env, server, study_uid: str, n: int) -> tuple[float, float, float, float]:
    receiver = bench.Receiver(env)
    try:
        from django.conf import settings

        from apps.catalog.filing import forget_under

        shutil.rmtree(settings.DOWNLOADS_DIR, ignore_errors=True)  # the last run's files: not the worker's CPU
        forget_under(settings.DOWNLOADS_DIR)
        before = (cpu_of(orthanc.process.pid), cpu_of_tree(receiver.proc.pid), rusage(resource.RUSAGE_SELF))
        wall = bench.portal_retrieve(server, study_uid, n)
        return (wall, cpu_of(orthanc.process.pid) - before[0], cpu_of_tree(receiver.proc.pid) - before[1],
                rusage(resource.RUSAGE_SELF) - before[2])
    finally:
        receiver.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--series", type=int, default=4)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-retrieve-cpu-"))
    receiver_port, storescp_port = bench.free_ports(2)
    env = bench.configure_django(work, receiver_port)
    from apps.dicom.demo.synthetic import write_dataset
    from apps.servers.models import DicomServer

    manifest = write_dataset(work / "dataset", patients=1, studies=1, series=args.series,
                             instances=args.instances // args.series, rows=512, cols=512, modalities=("CT",),
                             seed=7, id_prefix="BENCH")
    study_uid, n = manifest["studies"][0]["StudyInstanceUID"], manifest["files"]
    orthanc = bench.Orthanc(work / "orthanc").start()
    rows: dict[str, list] = {}
    try:
        orthanc.load(work / "dataset")
        orthanc.add_modality(bench.PORTAL_AE, bench.PORTAL_AE, receiver_port)
        orthanc.add_modality(bench.DCMTK_AE, bench.DCMTK_AE, storescp_port)
        peer = orthanc.peer()
        servers = {k: DicomServer.objects.create(name=f"CPU{k}", ae_title=peer.ae_title, host=peer.host,
                                                 port=peer.port, retries=0, download_timeout=600,
                                                 retrieve_method="c-move", max_associations=k) for k in (1, 2)}
        dcmtk(orthanc, study_uid, work, storescp_port)  # untimed warm-up, as in bench/retrieve.py
        portal(orthanc, env, servers[1], study_uid, n)
        for _ in range(args.repeat):
            rows.setdefault("DCMTK movescu -> storescp", []).append(dcmtk(orthanc, study_uid, work, storescp_port))
            for k in (1, 2):
                rows.setdefault(f"portal, {k} assoc.", []).append(portal(orthanc, env, servers[k], study_uid, n))
    finally:
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"{n} instances in {args.series} series, {args.repeat} runs, medians; CPU seconds per retrieval",
             "", "| variant | wall (s) | Orthanc CPU | receiving CPU | requesting CPU | total CPU |",
             "|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        wall, pacs, receiving, requesting = (statistics.median(r[i] for r in runs) for i in range(4))
        lines.append(f"| {name} | {wall:.2f} | {pacs:.2f} | {receiving:.2f} | {requesting:.2f} | "
                     f"{pacs + receiving + requesting:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
