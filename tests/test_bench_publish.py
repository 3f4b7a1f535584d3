"""bench/publish.py's file_system: the benchmarks' reports name the file system their work folder lies on,
because ext4 without a journal decides many of their figures (bench/README.md, "The file system")."""
from bench.publish import file_system


def test_the_file_system_of_a_folder_is_its_longest_mount_point():
    assert file_system("/proc/self") == "proc"  # /proc, not the root file system it is mounted on
    assert file_system("/dev/shm").split()[0] == "tmpfs"


def test_an_ext4_folder_says_whether_it_has_a_journal(tmp_path):
    found = file_system(tmp_path)
    assert found != "unknown"
    if found.startswith("ext4"):
        assert " a journal on " in found and found.split()[1] in ("with", "without")
