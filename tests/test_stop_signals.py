"""A long-running command stops on SIGTERM even when the signal lands while its main thread is inside the
stop event's wait(): `manage.py receive` ignored SIGTERM about 1 time in 25 (its handler called Event.set()
in the main thread, which already held the event's lock in wait(), and waited for it forever)."""
import subprocess
import sys
import textwrap

import pytest

from tests.receiver_process import ROOT

IN_THE_LOCK = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {root!r})
    from apps.dicom.service import stop_on_signals
    stop = stop_on_signals()
    with stop._cond:  # where the main thread is while it waits on the event
        os.kill(os.getpid(), signal.SIG{name})
        time.sleep(0.3)  # Python runs its handlers in the main thread between two bytecodes: by now, here
    print("stopped" if stop.wait(5) else "not stopped", flush=True)
""")


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_signal_arriving_inside_the_stop_events_wait_still_stops(name):
    done = subprocess.run([sys.executable, "-c", IN_THE_LOCK.format(root=str(ROOT), name=name)],
                          capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr[-2000:]
