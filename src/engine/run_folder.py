"""A run's output folder is its own: one run at a time holds it, a new run does not overwrite an earlier run's
checkpoints, and a resumed run names every key in which its recipe differs from the folder's config.yaml."""
import contextlib
import dataclasses
import datetime
import fcntl
import glob
import os
import socket

from src.config import ConfigError, load_config
from src.engine.run_state import RunCheckpoints

LOCK_FILE = ".lock"
RECORDS = ("metrics.json", "metrics.csv", "loss_curve.png", "accuracy_curve.png")  # beside the checkpoints
EVAL_REPORTS = ("eval_*.json", "eval_*.png")  # validate.py's reports of the run's checkpoints
# How this command runs, not what it trains: never compared.
RUN_CONTROL = {"output_dir", "resume", "replace_run", "allow_changed_recipe"}
# Keys whose change keeps a resumed run equal to an uninterrupted one with the new values: they decide when the
# run reads, reports, validates or saves (validation changes no weight), and how many data workers decode the same
# batches. `epochs` too, unless the LR schedule depends on it (`_lr_depends_on_epochs`).
SAFE_TO_CHANGE = {"epochs", "log_interval", "val_interval", "ckpt_interval", "ckpt_interval_steps", "keep_checkpoints",
                  "max_nonfinite_steps", "num_workers", "eval_batch_size", "device_id"}


class RunFolderError(RuntimeError):
    """The output folder is another run's, or the command's recipe is not the folder's; the message says what to do."""


@contextlib.contextmanager
def hold(directory: str):
    """Hold `directory` for this run: an flock on its .lock file, which records who holds it. The kernel drops the
    lock with the process, so a crashed run never leaves it held; on a shared folder only rank 0 takes it."""
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 1024).decode(errors="replace").strip() or "it has not said who it is yet"
            raise RunFolderError(f"{directory} is in use by another run ({holder}); wait for it or choose another "
                                 f"--output_dir") from None
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}, since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def claim(cfg):
    """Check the folder against the command (while holding it): a new run into an earlier run's checkpoints stops
    unless `replace_run`, which removes them; a resume compares the recipes (`compare_recipes`)."""
    checkpoints = RunCheckpoints(cfg.output_dir, cfg.keep_checkpoints)
    earlier = checkpoints.resumable() + [path for path in (checkpoints.best_path,) if os.path.isfile(path)]
    if cfg.resume:
        if checkpoints.resumable():
            compare_recipes(cfg)
    elif earlier and not cfg.replace_run:
        raise RunFolderError(f"{cfg.output_dir} holds an earlier run's checkpoints ({earlier[0]}): continue it with "
                             f"--resume auto, or start afresh in a new --output_dir or with --replace_run true "
                             f"(its files are then replaced)")
    elif earlier:
        reports = sorted(path for pattern in EVAL_REPORTS for path in glob.glob(os.path.join(cfg.output_dir, pattern)))
        for path in earlier + [os.path.join(cfg.output_dir, name) for name in RECORDS] + reports:
            if os.path.isfile(path):
                os.remove(path)
        print(f"replace_run: removed the earlier run's checkpoints and records"
              f"{f' and its {len(reports)} evaluation report file(s)' if reports else ''} from {cfg.output_dir}",
              flush=True)


def compare_recipes(cfg):
    """Name every key in which `cfg` differs from the folder's config.yaml: keys in SAFE_TO_CHANGE are applied, the
    others are an error unless `cfg.allow_changed_recipe`."""
    recipe = os.path.join(cfg.output_dir, "config.yaml")
    if not os.path.isfile(recipe):
        return
    try:
        folder = load_config(recipe)
    except ConfigError as err:
        raise RunFolderError(f"cannot compare the command's recipe with the run's: {err}") from err
    changed = [(key, value, getattr(cfg, key)) for key, value in dataclasses.asdict(folder).items()
               if key not in RUN_CONTROL and getattr(cfg, key) != value]
    schedule = _lr_depends_on_epochs(folder, cfg)
    safe = [c for c in changed if c[0] in SAFE_TO_CHANGE and not (c[0] == "epochs" and schedule)]
    unsafe = [c for c in changed if c not in safe]
    listed = lambda keys: ", ".join(f"{key} ({old!r} -> {new!r})" for key, old, new in keys)  # noqa: E731
    if unsafe and not cfg.allow_changed_recipe:
        why = f" (epochs sets {schedule})" if "epochs" in [c[0] for c in unsafe] else ""
        raise RunFolderError(f"--resume: the command's recipe differs from {recipe} in {listed(unsafe)}{why}; the "
                             f"resumed run would not equal an uninterrupted one. Resume with the folder's recipe "
                             f"(python train.py --resume {cfg.output_dir}), or pass --allow_changed_recipe true")
    if changed:
        print(f"resume: applying the keys that differ from {recipe}: {listed(changed)}"
              + (" (allowed by --allow_changed_recipe)" if unsafe else ""), flush=True)


def _lr_depends_on_epochs(folder, cfg) -> str:
    """What of the LR schedule (lr_schedule.py) `epochs` sets: the cosine's length, or a warm-up the run's end cuts
    short; "" when a changed `epochs` leaves every step's LR as it was."""
    if cfg.scheduler == "cosine":
        return "the cosine schedule's length"
    if cfg.warmup_epochs > min(folder.epochs, cfg.epochs):
        return "the warm-up's length"
    return ""
