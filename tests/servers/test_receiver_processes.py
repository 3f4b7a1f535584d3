"""`manage.py receive` on several processes: associations at once go to different processes (one Python
process runs one association at a time on its interpreter), the association limit holds in total, a child
that dies is replaced while the port stays served, and stopping or killing the receiver ends all of them."""
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.fixtures_common import unused_port
from tests.jobs.cluster import wait_for
from tests.receiver_process import start_receive, stop

pytestmark = pytest.mark.django_db(transaction=True)

CALLING_AE = "PROCTEST"


def start(tmp_path, port, processes=2, **env):
    """All associations here come from one address that is no server's: it may take every slot."""
    env.setdefault("RECEIVER_PEER_ASSOCIATIONS", 64)
    return start_receive("RECEIVERP", "--processes", str(processes), DATA_DIR=tmp_path / "data",
                         STAGING_DIR=tmp_path / "staging", DICOM_PORT=port, RECEIVER_ALLOWED_AE_TITLES=CALLING_AE,
                         **env)


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry))
    return found


def tcp_sockets() -> list[list[str]]:
    """The fields of each line of /proc/net/tcp: [1] local and [2] remote address:port (hex), [3] the
    state (0A: listening), [9] the socket's inode."""
    return [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]


def descriptors(pid: int) -> dict[int, str]:
    """What each open file descriptor of `pid` names ("socket:[inode]", "pipe:[inode]", a path); one
    closed while this looks is left out."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
    return found


def socket_fds(pid: int) -> dict[str, int]:
    """The socket inodes `pid` holds, each with its file descriptor."""
    return {target[len("socket:["):-1]: fd for fd, target in descriptors(pid).items()
            if target.startswith("socket:[")}


def serving_process(client: socket.socket, server_port: int, pids: set[int]) -> int | None:
    """Which of `pids` holds the receiver's end of the connection `client` made."""
    client_port = client.getsockname()[1]
    inode = next((f[9] for f in tcp_sockets() if int(f[1].split(":")[1], 16) == server_port
                  and int(f[2].split(":")[1], 16) == client_port), None)
    return next((pid for pid in pids if inode in socket_fds(pid)), None)


def listening_fd(pid: int) -> int:
    """The file descriptor of `pid` that is the receiver's listening socket (handed down by its parent)."""
    held = socket_fds(pid)
    found = [held[f[9]] for f in tcp_sockets() if f[3] == "0A" and f[9] in held]
    assert found, f"process {pid} holds no listening socket"
    return found[0]


def associate(port: int):
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="RECEIVERP")


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def receiver(tmp_path):
    """(the receiver process, its port), on two processes; stopped at the end unless a test ended it."""
    port = unused_port()
    proc = start(tmp_path, port)
    yield proc, port
    stop(proc)


def test_two_associations_at_once_are_served_by_two_processes(receiver):
    proc, port = receiver
    pids = children(proc.pid)
    assert len(pids) == 2, pids
    first, second = associate(port), associate(port)
    try:
        assert first.is_established and second.is_established
        served_by = {serving_process(a.dul.socket.socket, port, pids) for a in (first, second)}
        assert served_by == pids, "both associations landed in one process"
        assert first.send_c_echo().Status == 0 and second.send_c_echo().Status == 0
    finally:
        first.release()
        second.release()


@pytest.mark.parametrize("limit", [2, 3])
def test_the_association_limit_holds_in_total_across_processes(tmp_path, limit):
    """An odd limit too: 3 on 2 processes is 2 and 1, not 2 each."""
    port = unused_port()
    proc = start(tmp_path, port, RECEIVER_MAX_ASSOCIATIONS=limit)
    held = []
    try:
        assert len(children(proc.pid)) == 2
        held = [associate(port) for _ in range(limit + 1)]
        assert sum(a.is_established for a in held) == limit, "refused within the limit"
        assert held[-1].is_rejected, f"an association beyond the limit of {limit} was accepted"
    finally:
        for a in held:
            if a.is_established:
                a.release()
        stop(proc)


def test_a_burst_up_to_the_limit_is_served_in_full_however_it_falls_on_the_processes(tmp_path):
    """The kernel gives each connection to a process waiting in accept(); in a burst one process may
    get more than its share of the limit, and must leave the rest to the others instead of refusing."""
    port, limit = unused_port(), 8
    proc = start(tmp_path, port, RECEIVER_MAX_ASSOCIATIONS=limit)
    try:
        for _ in range(5):
            with ThreadPoolExecutor(limit) as burst:
                held = list(burst.map(lambda _: associate(port), range(limit)))
            try:
                assert sum(a.is_established for a in held) == limit, "refused within the limit"
            finally:
                for a in held:
                    if a.is_established:
                        a.release()
    finally:
        stop(proc)


def test_a_child_that_dies_is_replaced_and_the_port_stays_served(receiver):
    proc, port = receiver
    initial = children(proc.pid)
    victim = min(initial)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(proc.pid) - {victim}) == 2, 30, "a replacement receiver process")
    [replacement] = children(proc.pid) - {victim} - initial
    # Nobody waits for a replacement's "ready": handed that pipe's number, it would write into whatever
    # the parent has opened under it since.
    assert "--ready-fd" not in open(f"/proc/{replacement}/cmdline").read().split("\0")
    # Of what it was handed, only the listener: no pipe beyond stdout and stderr. (It may be opening files
    # of its own, Python's start-up ones, at the moment this looks.)
    pipes = [fd for fd, target in descriptors(replacement).items() if fd > 2 and target.startswith("pipe:")]
    assert pipes == [] and listening_fd(replacement) > 2
    for _ in range(4):  # every process answers, the new one included
        assoc = associate(port)
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()


def test_sigterm_stops_every_process_and_frees_the_port(receiver):
    proc, port = receiver
    pids = children(proc.pid)
    assert len(pids) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), 10, "the children to end")
    assert port_refuses(port)


def test_a_receiver_killed_takes_its_processes_with_it(receiver):
    proc, port = receiver
    pids = children(proc.pid)
    assert len(pids) == 2
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: not any(alive(pid) for pid in pids), 10, "the children to die with their parent")
    # A killed process whose main thread is gone already looks dead while its other threads still hold
    # its files for a moment: the port must be freed soon after, not necessarily at once.
    wait_for(lambda: port_refuses(port), 10, "the port to be freed")


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent to reap it)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
