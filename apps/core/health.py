"""What /healthz answers: the state `runportal` writes for its processes (apps/dicom/supervisor.py), and
workers stuck in one item (apps/jobs/health.py), which the database shows wherever the web runs, and a
receiver whose association slots are all taken (apps/retrieval/receiver_check.py). A data folder below its
MIN_FREE_GB floor (apps/jobs/diskspace.py) makes the portal "degraded" (200: it serves, work writing there
waits), naming the folder.
Without a running supervisor (the web alone, scale-out services) the web answers, and "workers" is
named only when one is stuck."""
from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from apps.jobs import diskspace
from apps.jobs.health import stuck_items
from apps.retrieval.receiver_check import receiver_saturation


def status_path() -> Path:
    return Path(settings.DATA_DIR) / "portal-status.json"


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def portal_health() -> tuple[int, dict]:
    """(HTTP status, body): 200 {"status": "ok", "parts": {...}} when every part is up, 503 with "down"
    naming the parts that are not and a message saying why."""
    parts = supervised_parts()
    try:
        stuck = stuck_items()
    except DatabaseError as exc:
        parts["database"] = {"up": False, "problem": f"{type(exc).__name__}: {exc}"}
    else:
        if stuck:
            parts["workers"] = {**parts.get("workers", {}), "up": False, "problem": "; ".join(stuck)}
    saturated = receiver_saturation()
    if saturated:
        parts["receiver"] = {**parts.get("receiver", {}), "up": False, "state": "saturated", "problem": saturated}
    low = diskspace.health()
    if low:
        parts["disk"] = {"up": True, "degraded": True, "state": "low", "problem": low}
    if not parts:
        return 200, {"status": "ok"}
    down = [name for name, part in parts.items() if not part.get("up")]
    degraded = [name for name, part in parts.items() if part.get("degraded")]
    body = {"status": "down" if down else ("degraded" if degraded else "ok"),
            "parts": {name: parts[name].get("state") or ("down" if name in down else "up") for name in parts}}
    if down:
        body["down"] = down
    if degraded:
        body["degraded"] = degraded
    if down or degraded:
        body["message"] = "; ".join(f"{name} is {parts[name].get('state') or 'down'} "
                                    f"({parts[name].get('problem') or 'not running'})" for name in down + degraded)
    return (503 if down else 200), body


def supervised_parts() -> dict:
    """The parts `runportal` reports, or none when no portal supervisor is running here."""
    try:
        state = json.loads(status_path().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not _alive(state.get("supervisor")):  # left by a portal that is gone
        return {}
    return state.get("parts", {})
