"""The one path-confinement seam (apps/dicom/paths.py) against every hostile path: `..`, an absolute path
elsewhere, a symbolic link out, a loop of links, a FIFO, a device, a socket, NUL and other control
characters. Every app that resolves a user's path or walks a tree goes through these functions."""
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from apps.dicom.paths import (
    NotRegularFile,
    PathMissing,
    PathRefused,
    Skipped,
    confine,
    list_files,
    open_regular,
    read_regular,
)


@pytest.fixture
def roots(tmp_path):
    """An allowed root with one folder and one file in it, and a sibling folder outside it."""
    root = tmp_path / "root"
    (root / "cases").mkdir(parents=True)
    (root / "cases" / "a.dcm").write_bytes(b"A")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(b"SECRET")
    return root.resolve(), outside.resolve()


def refused(path, roots, **kw) -> str:
    with pytest.raises(PathRefused) as caught:
        confine(path, roots, roots_name="IMPORT_ROOTS", **kw)
    return str(caught.value)


def test_a_path_inside_a_root_resolves(roots):
    root, _ = roots
    assert confine(str(root / "cases" / ".." / "cases"), [root]) == root / "cases"
    assert confine(root, [root]) == root


def test_dot_dot_out_of_the_root_is_refused(roots):
    root, outside = roots
    reason = refused(f"{root}/cases/../../outside", [root])
    assert "is outside IMPORT_ROOTS" in reason and str(outside) in reason


def test_an_absolute_path_elsewhere_and_a_relative_path_are_refused(roots):
    root, _ = roots
    assert "is outside IMPORT_ROOTS" in refused("/etc", [root])
    assert "must be an absolute path inside IMPORT_ROOTS" in refused("cases", [root])
    assert "must be an absolute path" in refused("  ", [root])


def test_a_symbolic_link_out_of_the_root_is_refused(roots):
    root, outside = roots
    (root / "door").symlink_to(outside)
    reason = refused(str(root / "door"), [root])
    assert "is outside IMPORT_ROOTS" in reason and f"resolves to {outside}" in reason


def test_a_loop_of_symbolic_links_is_refused(roots):
    root, _ = roots
    (root / "ping").symlink_to(root / "pong")
    (root / "pong").symlink_to(root / "ping")
    assert "loop of symbolic links" in refused(str(root / "ping"), [root])


@pytest.mark.parametrize("bad, named", [("\0", "a NUL character"), ("\n", "a line break"),
                                        ("\x1b", "a control character (U+001B)")])
def test_nul_and_control_characters_are_refused(roots, bad, named):
    root, _ = roots
    assert named in refused(f"{root}/cases{bad}x", [root])


def test_no_roots_refuses_everything(roots):
    """(as being outside every root)"""
    root, _ = roots
    assert "No IMPORT_ROOTS are configured" in refused(str(root), [])


def test_a_missing_path_is_refused_only_when_it_must_exist(roots):
    root, _ = roots
    assert confine(str(root / "new"), [root]) == root / "new"
    with pytest.raises(PathMissing, match="does not exist"):
        confine(str(root / "new"), [root], must_exist=True)


@pytest.fixture
def hostile_tree(roots, tmp_path):
    """A tree with one of every hostile kind of entry next to two good files."""
    root, outside = roots
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "good.dcm").write_bytes(b"G")
    (tree / "sub" / "deep.dcm").write_bytes(b"D")
    os.mkfifo(tree / "pipe")
    os.mknod(tree / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tree / "sock"))
    (tree / "loop").symlink_to(tree / "loop")
    (tree / "up").symlink_to(tree)  # a folder loop if links to folders were followed
    (tree / "out.dcm").symlink_to(outside / "secret.dcm")
    (tree / "in.dcm").symlink_to(tree / "good.dcm")
    (tree / "gone").symlink_to(tree / "nothing")
    (tree / "to-pipe").symlink_to(tree / "pipe")
    (tree / ".hidden").write_bytes(b"H")
    yield tree
    listener.close()


def test_walk_yields_only_regular_files_and_names_everything_else(roots, hostile_tree):
    root, _ = roots
    files, skipped = list_files(hostile_tree, [root], roots_name="IMPORT_ROOTS")
    names = [p.relative_to(hostile_tree).as_posix() for p in files]
    assert names == [".hidden", "good.dcm", "in.dcm", "sub/deep.dcm"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {
        "pipe": "a FIFO (named pipe), not a regular file: not read",
        "null": "a character device, not a regular file: not read",
        "sock": "a socket, not a regular file: not read",
        "loop": "a loop of symbolic links: not followed",
        "up": "a symbolic link to a folder: not followed",
        "out.dcm": "a symbolic link that leads outside IMPORT_ROOTS: not read",
        "gone": "a symbolic link to nothing (its target is gone)",
        "to-pipe": "a symbolic link to a FIFO (named pipe), not a regular file: not read",
    }
    assert all(isinstance(s, Skipped) for s in skipped)


def test_walk_leaves_hidden_names_out_when_asked(roots, hostile_tree):
    root, _ = roots
    files, _ = list_files(hostile_tree, [root], skip_hidden=True)
    assert ".hidden" not in {p.name for p in files}


def test_walk_of_a_single_fifo_skips_it(roots, hostile_tree):
    root, _ = roots
    assert list_files(hostile_tree / "pipe", [root]) == ([], [Skipped(hostile_tree / "pipe",
                                                                      "a FIFO (named pipe), not a regular file: not read")])
    assert list_files(hostile_tree / "good.dcm", [root]) == ([hostile_tree / "good.dcm"], [])


def test_walk_asks_to_stop_once_per_folder(roots, hostile_tree):
    root, _ = roots

    class Stop(Exception):
        pass

    def stop():
        raise Stop()

    with pytest.raises(Stop):
        list_files(hostile_tree, [root], should_stop=stop)


def test_open_regular_never_blocks_on_a_fifo_or_a_device(roots, hostile_tree):
    outcome = {}

    def attempt():
        for name in ("pipe", "to-pipe", "null", "sub"):
            try:
                open_regular(hostile_tree / name)
            except NotRegularFile as exc:
                outcome[name] = exc.strerror

    opener = threading.Thread(target=attempt, daemon=True)
    opener.start()
    opener.join(timeout=10)
    assert not opener.is_alive(), "open_regular blocked"
    assert outcome == {"pipe": "a FIFO (named pipe), not a regular file",
                       "to-pipe": "a FIFO (named pipe), not a regular file",
                       "null": "a character device, not a regular file", "sub": "a folder, not a regular file"}
    assert read_regular(hostile_tree / "good.dcm") == b"G"
    with open_regular(hostile_tree / "good.dcm") as fp:
        assert fp.name == str(hostile_tree / "good.dcm")  # readers name the file in their messages
    with pytest.raises(FileNotFoundError):
        open_regular(hostile_tree / "gone")


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_on_the_descriptor(roots, hostile_tree, monkeypatch):
    """The check before open and the open are two steps: a FIFO put in between is caught by fstat."""
    path = hostile_tree / "swap"
    path.write_bytes(b"S")
    real_open = os.open

    def swapping_open(name, flags, *args):
        if Path(name) == path:
            path.unlink()
            os.mkfifo(path)
            assert flags & os.O_NONBLOCK  # else this open would wait for a writer for ever
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", swapping_open)
    with pytest.raises(NotRegularFile, match="FIFO"):
        open_regular(path)
