"""Files written whole or not at all: whoever reads them next (a resumed run, a results page, `--reuse`, another
process) never finds half a file after a crash, a kill or a full disk. Every file the repo writes goes through
`replace_atomic`, so a fault of the disk ends as one `WriteError` naming the file, with no temporary file left."""
import contextlib
import errno
import glob
import json
import logging
import os
import shutil

# Faults of the disk or the file system, not of the program: full, read-only, no permission, over quota.
DISK_ERRNOS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
               errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied",
               errno.EPERM: "Operation not permitted"}


class WriteError(OSError):
    """A file that the disk or the file system refused; the message names the file, the reason and `note` (what the
    caller knows, such as where a run can continue from)."""

    def __init__(self, path, errno_, note=""):
        super().__init__(errno_, f"cannot write {path}: {DISK_ERRNOS[errno_]}" + (f"; {note}" if note else ""))
        self.path = path

    def noting(self, note: str) -> "WriteError":
        return WriteError(self.path, self.errno, note)

    @property
    def no_space(self) -> bool:
        return self.errno in (errno.ENOSPC, errno.EDQUOT)

    def __str__(self):
        return self.strerror


def temporary_path(path, suffix=""):
    """The hidden temporary file beside `path` that `replace_atomic` fills; `suffix` for writers that insist on one
    (MindSpore's: .ckpt, .mindir)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.tmp{suffix}")


def replace_atomic(path, fill, suffix=""):
    """`fill(tmp)` writes a temporary file beside `path`, which is then renamed onto it (one atomic step on POSIX).
    If `fill` fails, `path` keeps its old content and the temporary file is removed, with those the writer made
    from its name (MindSpore's save_checkpoint writes `<tmp stem>.tmp` first); a disk fault raises WriteError."""
    tmp = temporary_path(path, suffix)
    made_by_writer = glob.escape(temporary_path(path)) + "*"  # tmp, and MindSpore's `<tmp stem>.tmp`
    logging.disable(logging.CRITICAL)  # MindSpore's writers log their failures in lines of their own
    try:
        fill(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        for left in glob.glob(made_by_writer):
            with contextlib.suppress(OSError):
                os.remove(left)
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            raise WriteError(path, err.errno) from err
        raise
    finally:
        logging.disable(logging.NOTSET)


def write_atomic(path, write):
    """Text file written by `write(f)`."""
    def fill(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)
    replace_atomic(path, fill)


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path, value, indent=1):
    write_atomic(path, lambda f: json.dump(value, f, indent=indent))


def copy_atomic(source, path):
    replace_atomic(path, lambda tmp: shutil.copyfile(source, tmp))
