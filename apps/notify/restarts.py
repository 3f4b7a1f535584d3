"""The supervisors' `on_death` (apps/dicom/supervisor.py): a part of the portal that died quickly
RESTART_ALERT_AFTER times in a row keeps restarting, and the operators are told (throttled per part).
The message goes out on a thread of its own: the supervisor's loop restarts the others meanwhile."""
import logging
import socket
import threading

from django.db import close_old_connections, connections

from apps.notify.operators import alert_operators

RESTART_ALERT_AFTER = 3  # quick deaths in a row
log = logging.getLogger("apps.notify")


def alert(part: str, quick_deaths: int, restarts: int, problem: str) -> bool:
    return alert_operators(
        f"restarts:{part}", f"{part} keeps restarting on {socket.gethostname()}",
        f"The portal's {part} process died {quick_deaths} times in a row soon after starting; it was restarted "
        f"{restarts} time(s) since its supervisor started.\nLast: {part} {problem}\n\n"
        "Its log says why; /healthz shows whether it is up now.")


def _alert_in_thread(part: str, quick_deaths: int, restarts: int, problem: str) -> None:
    try:
        close_old_connections()
        alert(part, quick_deaths, restarts, problem)
    except Exception:  # the database may be what keeps it dying
        log.exception("could not report that %s keeps restarting", part)
    finally:
        connections.close_all()


def on_death(child) -> None:
    if child.quick_deaths >= RESTART_ALERT_AFTER:
        threading.Thread(target=_alert_in_thread, name=f"alert-{child.name}", daemon=True,
                         args=(child.name, child.quick_deaths, child.restarts + 1, child.problem)).start()
