"""Small file systems for the disk-fault tests: a tmpfs of a given size (as root), filled to the brim or remounted
read-only, always unmounted afterwards."""
import contextlib
import os
import subprocess

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tmpfs(directory, size="2m", read_only=False):
    """`directory` as a fresh tmpfs of `size` (read-only: mounted empty, then remounted ro) for the block's length."""
    os.makedirs(directory, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory, leave=0) -> str:
    """Fill the file system of `directory` up to `leave` bytes free with one file -> its path (delete it to free
    the space)."""
    path = os.path.join(directory, "filler")
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return path


def hidden_files(directory) -> list:
    """Files whose name starts with a dot, the run folder's lock aside: what a failed write might leave behind."""
    return sorted(name for name in os.listdir(directory) if name.startswith(".") and name != ".lock")
