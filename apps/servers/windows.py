"""A server's time windows: when the portal may query, retrieve from or send to it (a PACS that wants
retrievals only at night). `windows` is a list of {"direction": "query"|"retrieve"|"send", "days":
"mon,tue,…" (all days when left out or "*"), "start": "HH:MM", "end": "HH:MM"} in the portal's TIME_ZONE;
a window whose end is before its start runs past midnight into the next day. A direction with no window is
always open. The runner asks hold() before it starts an item (apps/jobs/registry.add_check): an item for a
paused server or outside its direction's windows waits; one already running finishes."""
import re
from datetime import datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.jobs.holds import Hold

DIRECTIONS = ("query", "retrieve", "send")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS = {"direction", "days", "start", "end"}
MAX_WINDOWS = 50
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def now() -> datetime:
    """The clock the windows are read against (a test replaces it rather than waiting for 20:00)."""
    return timezone.localtime()


def validate_windows(value) -> None:
    """Refuse anything but a list of well-formed windows, naming the window (from 1) and the rule."""
    if not isinstance(value, list):
        raise ValidationError("Windows must be a list of {direction, days, start, end}.")
    if len(value) > MAX_WINDOWS:
        raise ValidationError(f"At most {MAX_WINDOWS} windows.")
    for n, window in enumerate(value, 1):
        where = f"Window {n}"
        if not isinstance(window, dict):
            raise ValidationError(f"{where} must be an object with direction, days, start and end.")
        unknown = set(window) - KEYS
        if unknown:
            raise ValidationError(f"{where} has unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                                  f"use direction, days, start, end.")
        if window.get("direction") not in DIRECTIONS:
            raise ValidationError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}.")
        parse_days(window.get("days"), where)
        for key in ("start", "end"):
            parse_time(window.get(key), f"{where}: {key}")
        if window["start"] == window["end"]:
            raise ValidationError(f"{where}: start and end are both {window['start']}; a window must have a "
                                  "length (leave the direction without windows to allow it all day).")


def parse_days(days, where: str = "Window") -> set[int]:
    if days is None or (isinstance(days, str) and days.strip() in ("", "*")):
        return set(range(7))
    if not isinstance(days, str):
        raise ValidationError(f"{where}: days must be text such as \"mon,tue,fri\".")
    found = set()
    for day in (d.strip().lower() for d in days.split(",")):
        if day not in DAYS:
            raise ValidationError(f"{where}: days: '{day[:20]}' is not one of {','.join(DAYS)}.")
        found.add(DAYS.index(day))
    return found


def parse_time(value, where: str) -> time:
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match:
        raise ValidationError(f"{where}: {str(value)[:20]!r} is not a time HH:MM (00:00 to 23:59).")
    return time(int(match[1]), int(match[2]))


def _intervals(window: dict, around: datetime):
    """The window's (start, end) datetimes on the days from yesterday to a week ahead of `around`."""
    days = parse_days(window.get("days"))
    start, end = parse_time(window["start"], "start"), parse_time(window["end"], "end")
    for offset in range(-1, 8):
        day = around.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        begins = datetime.combine(day, start, tzinfo=around.tzinfo)
        ends = datetime.combine(day + timedelta(days=1 if end <= start else 0), end, tzinfo=around.tzinfo)
        yield begins, ends


def opens_at(windows: list, direction: str, at: datetime) -> datetime | None:
    """None when `direction` is open at `at` (it has no window, or `at` is inside one); else when the next
    of its windows opens."""
    mine = [w for w in windows or [] if w.get("direction") == direction]
    if not mine:
        return None
    starts = []
    for window in mine:
        for begins, ends in _intervals(window, at):
            if begins <= at < ends:
                return None
            if begins > at:
                starts.append(begins)
    return min(starts) if starts else at + timedelta(days=7)


def describe_opening(opens: datetime, at: datetime) -> str:
    if opens.date() == at.date():
        return f"opens at {opens:%H:%M}"
    return f"opens {DAYS[opens.weekday()]} at {opens:%H:%M}"


def hold(item) -> Hold | None:
    """The servers' check on an item about to start: a paused server, or a closed window of its direction."""
    direction = item.direction()
    for server in item.servers():
        if server.paused:
            return Hold(f"Paused: server {server.name} is paused by an operator.", item.held_with(server))
        if direction:
            at = now()
            opens = opens_at(server.windows, direction, at)
            if opens is not None:
                return Hold(f"Waiting for the window of {server.name}, {describe_opening(opens, at)} "
                            f"({direction}).", item.held_with(server))
    return None
