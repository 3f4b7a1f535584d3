"""Paths users name and trees the portal walks, kept inside the allowed roots; the one place that
decides it for sending, inboxes, imports and delivery folders.

- `confine` resolves a path a user typed (symlinks and `..` first) and refuses it, with the reason in
  words, unless it lies inside one of the roots: no escape by `..`, by an absolute path elsewhere or by
  a symbolic link, no NUL or other control character, no loop of links.
- `walk` lists a tree and yields only regular files; everything else (FIFOs, devices, sockets, links
  to folders, loops of links, links leading out of the roots, folders it cannot read) is reported as
  skipped with its reason. Links to folders are never followed, so no loop can make it run for ever.
- `open_regular` opens a file for reading without ever blocking: a FIFO's open() waits for a writer,
  so the file is checked to be regular before it is opened, opened with O_NONBLOCK, and checked again
  on the open descriptor (it may have been swapped in between).
"""
from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_CONTROL_NAMES = {"\0": "a NUL character", "\n": "a line break", "\r": "a line break", "\t": "a tab"}


class PathRefused(ValueError):
    """A path that may not be used; the message says why."""


class PathMissing(PathRefused):
    """A path that must exist and does not."""


class PathOutside(PathRefused):
    """A path that resolves outside every root (or no root is configured)."""


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, a device, a socket, a folder): never opened."""

    def __init__(self, path: str | os.PathLike, mode: int):
        super().__init__(errno.EINVAL, f"{kind_of(mode)}, not a regular file", os.fspath(path))


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


_CONTROL = re.compile("[\x00-\x1f\x7f]")  # one search in C: the catalog asks this of every file it files


def control_character(text: str) -> str:
    """The name of the first control character in `text` ("a NUL character", …), or "" when there is none."""
    found = _CONTROL.search(text)
    if found is None:
        return ""
    char = found.group()
    return _CONTROL_NAMES.get(char, f"a control character (U+{ord(char):04X})")


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISREG, "a regular file"))


def kind_of(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "an unknown kind of file")


def resolved_roots(roots: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(root).resolve() for root in roots]


def within(path: Path, roots: Iterable[Path]) -> bool:
    """True when the resolved `path` is one of the (resolved) roots or lies inside one."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def overlap(a: Path, b: Path) -> bool:
    """The same folder, or one inside the other."""
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def confine(path: str | os.PathLike, roots: Iterable[str | os.PathLike], *, what: str = "path",
            roots_name: str = "the allowed folders", must_exist: bool = False) -> Path:
    """The path with symlinks and `..` resolved, or PathRefused saying why it may not be used."""
    allowed = resolved_roots(roots)
    named = ", ".join(map(str, allowed))
    if not allowed:
        raise PathOutside(f"No {roots_name} are configured, so no {what} on the server can be used.")
    text = os.fspath(path)
    bad = control_character(text)
    if bad:
        raise PathRefused(f"The {what} contains {bad}; a path is one line of plain text.")
    if not text.strip() or not Path(text).is_absolute():
        raise PathRefused(f"The {what} must be an absolute path inside {roots_name} ({named}).")
    try:
        resolved = Path(text).resolve(strict=must_exist)
    except FileNotFoundError:
        raise PathMissing(f"The {what} {text} does not exist.") from None
    except RuntimeError:  # Python 3.11 reports a loop of symbolic links so (later versions: ELOOP)
        raise PathRefused(f"The {what} {text} leads into a loop of symbolic links.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefused(f"The {what} {text} leads into a loop of symbolic links.") from None
        raise PathRefused(f"The {what} {text} cannot be used: {exc.strerror or exc}.") from None
    if not within(resolved, allowed):
        via = f" (it resolves to {resolved})" if str(resolved) != text.rstrip("/") else ""
        raise PathOutside(f"The {what} {text} is outside {roots_name} ({named}){via}.")
    return resolved


def _link_problem(link: str, roots: list[Path], roots_name: str) -> str:
    """Why a symbolic link met in a walk is not used, or "" when it leads to a regular file inside the roots."""
    try:
        target = Path(link).resolve(strict=True)
    except RuntimeError:
        return "a loop of symbolic links: not followed"
    except FileNotFoundError:
        return "a symbolic link to nothing (its target is gone)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a loop of symbolic links: not followed"
        return f"a symbolic link that cannot be followed: {exc.strerror or exc}"
    try:
        mode = os.stat(target).st_mode
    except OSError as exc:
        return f"a symbolic link that cannot be followed: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "a symbolic link to a folder: not followed"
    if not within(target, roots):
        return f"a symbolic link that leads outside {roots_name}: not read"
    if not stat.S_ISREG(mode):
        return f"a symbolic link to {kind_of(mode)}, not a regular file: not read"
    return ""


def walk(source: str | os.PathLike, roots: Iterable[str | os.PathLike], *, roots_name: str = "the allowed folders",
         skip_hidden: bool = False, should_stop: Callable[[], bool] | None = None) -> Iterator[Path | Skipped]:
    """Every regular file under `source` in tree order (a folder's files by name, then its subfolders by
    name), and a Skipped for everything else. A source that is itself a file is yielded or skipped.
    Names starting with a dot are left out without a word when `skip_hidden`. `should_stop` is asked once
    per folder; a caller that wants to stop raises from it."""
    allowed = resolved_roots(roots)
    start = Path(source)
    try:
        mode = os.lstat(start).st_mode
    except OSError as exc:
        yield Skipped(start, f"cannot be read: {exc.strerror or exc}")
        return
    if stat.S_ISLNK(mode):
        problem = _link_problem(str(start), allowed, roots_name)
        yield Skipped(start, problem) if problem else start
        return
    if not stat.S_ISDIR(mode):
        yield start if stat.S_ISREG(mode) else Skipped(start, f"{kind_of(mode)}, not a regular file: not read")
        return
    folders = [str(start)]
    while folders:
        if should_stop is not None:
            should_stop()
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            yield Skipped(Path(folder), f"cannot read the folder: {exc.strerror or exc}")
            continue
        subfolders = []
        for entry in entries:
            if skip_hidden and entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    problem = _link_problem(entry.path, allowed, roots_name)
                    yield Skipped(Path(entry.path), problem) if problem else Path(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                elif entry.is_file(follow_symlinks=False):  # the folder listing says so: no system call
                    yield Path(entry.path)
                else:
                    kind = kind_of(entry.stat(follow_symlinks=False).st_mode)
                    yield Skipped(Path(entry.path), f"{kind}, not a regular file: not read")
            except OSError as exc:  # vanished or unreadable between the listing and the look
                yield Skipped(Path(entry.path), f"cannot be read: {exc.strerror or exc}")
        folders += reversed(subfolders)  # popped in name order


def list_files(source: str | os.PathLike, roots: Iterable[str | os.PathLike], **options) -> tuple[list[Path],
                                                                                                 list[Skipped]]:
    """walk() gathered: (regular files, skipped entries)."""
    files, skipped = [], []
    for found in walk(source, roots, **options):
        (skipped if isinstance(found, Skipped) else files).append(found)
    return files, skipped


def _regular_fd(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    """(A descriptor open for reading on `path`, its status), or NotRegularFile when it is not a regular
    file: looked at before the open (a FIFO's or a device's open may block or act) and again on the open
    descriptor (it may have been swapped in between). Other OSErrors (missing, no permission) pass."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFile(path, status.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, status


def open_regular(path: str | os.PathLike):
    """A binary file object for reading `path` (symlinks followed), or NotRegularFile when it is not a
    regular file; never blocks on a FIFO or a device. Other OSErrors (missing, no permission) pass."""
    fd, _ = _regular_fd(path)
    try:
        os.set_blocking(fd, True)
        fp = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    fp.raw.name = os.fspath(path)  # as open() names it (readers put it in their messages), not the descriptor
    return fp


def read_head(path: str | os.PathLike, limit: int) -> tuple[bytes, int]:
    """(The first `limit` bytes of a regular file, its size), by open_regular's rules, without a file
    object: a header's first look (catalog_entry.read_entry) cost 30 us more for opening one."""
    fd, status = _regular_fd(path)
    try:
        return os.read(fd, limit), status.st_size  # (O_NONBLOCK means nothing to a regular file)
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file (open_regular's rules)."""
    with open_regular(path) as fp:
        return fp.read()
