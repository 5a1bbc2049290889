"""Files written whole or not at all: whoever reads them next (a resumed run, a results page, `--reuse`, another
process) never finds half a file after a crash, a kill or a full disk."""
import json
import os
import shutil


def _replace_atomic(path, fill):
    """`fill(tmp)` writes a temporary file beside `path`, which is then renamed onto it (one atomic step on POSIX);
    if `fill` fails, `path` keeps its old content and the temporary file is removed."""
    tmp = f"{path}.tmp"
    try:
        fill(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomic(path, write):
    """Text file written by `write(f)`."""
    def fill(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)
    _replace_atomic(path, fill)


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path, value, indent=1):
    write_atomic(path, lambda f: json.dump(value, f, indent=indent))


def copy_atomic(source, path):
    _replace_atomic(path, lambda tmp: shutil.copyfile(source, tmp))
