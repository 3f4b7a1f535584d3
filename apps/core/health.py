"""What /healthz answers: the state `runportal` writes for its processes (apps/dicom/supervisor.py).
Without a running supervisor (the web alone, scale-out services) only the web is known: it answers."""
from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings


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
    try:
        state = json.loads(status_path().read_text())
    except (FileNotFoundError, ValueError):
        return 200, {"status": "ok"}
    if not _alive(state.get("supervisor")):  # left by a portal that is gone
        return 200, {"status": "ok"}
    parts = state.get("parts", {})
    down = [name for name, part in parts.items() if not part.get("up")]
    body = {"status": "down" if down else "ok", "parts": {name: "down" if name in down else "up" for name in parts}}
    if down:
        body["down"] = down
        body["message"] = "; ".join(f"{name} is down ({parts[name].get('problem') or 'not running'})"
                                    for name in down)
    return (503 if down else 200), body
