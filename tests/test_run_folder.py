"""A run's folder is its own: a second run into it stops naming the holder, a crashed holder does not keep it, a new
run does not overwrite an earlier run's checkpoints, a resume names every key its recipe changes; and each entry
point refuses the flags of another."""
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml

import export
import train
import validate
from scripts import predict
from src.config import ConfigError
from src.engine.run_folder import RunFolderError
from tests.engine_fixtures import tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# train.py as a child process on the tests' tiny_net; STEP_DELAY slows each step so that a test can act mid-run.
CHILD = """
import os, runpy, sys, time
import src
import tests.engine_fixtures
from src.engine.train_step import TrainStep
_call = TrainStep.__call__
TrainStep.__call__ = lambda self, *args: (time.sleep(float(os.environ.get("STEP_DELAY", "0"))), _call(self, *args))[1]
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""
# One short epoch in PyNative under a constant LR (epochs is then safe to change on a resume).
QUICK = dict(mode="pynative", epochs=1, max_steps_per_epoch=3, log_interval=1, scheduler="constant",
             warmup_epochs=0.0)


def start_child(config, *flags, delay="0"):
    return subprocess.Popen([sys.executable, "-c", CHILD, "--config", config, *flags], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "STEP_DELAY": delay})


def read_until(proc, pattern):
    for line in proc.stdout:
        if re.search(pattern, line):
            return
    raise AssertionError(f"the run ended (status {proc.wait()}) before printing {pattern!r}: {proc.stderr.read()}")


def test_a_second_run_into_a_held_folder_stops_naming_the_holder_and_the_first_finishes(tmp_path):
    config = write_config(tiny_config(tmp_path, **{**QUICK, "max_steps_per_epoch": 6}), tmp_path / "cfg.yaml")
    first = start_child(config, delay="1.0")
    try:
        read_until(first, r"epoch 1/1  step 1/")
        second = subprocess.run([sys.executable, "-c", CHILD, "--config", config], cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"train.py: error: {tmp_path / 'run'} is in use by another run (host {os.uname().nodename}, pid {first.pid}, "
        f"since {second.stderr.split('since ')[1][:23]}); wait for it or choose another --output_dir"]
    assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", second.stderr)
    assert "steps of" not in second.stdout  # stopped before reading data or building the model
    assert os.path.isfile(tmp_path / "run" / "epoch_0001.ckpt")


def test_a_killed_holder_leaves_the_folder_free(tmp_path, capsys):
    config = write_config(tiny_config(tmp_path, **{**QUICK, "max_steps_per_epoch": 6}), tmp_path / "cfg.yaml")
    holder = start_child(config, delay="1.0")
    try:
        read_until(holder, r"epoch 1/1  step 1/")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train.main(["--config", config, "--resume", "auto"])  # no checkpoint yet: starts from scratch
    assert "resume auto: no checkpoint" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "run" / "epoch_0001.ckpt")


def test_a_new_run_into_an_earlier_runs_checkpoints_is_refused_unless_replaced(tmp_path, capsys):
    config = write_config(tiny_config(tmp_path, **{**QUICK, "epochs": 2}), tmp_path / "cfg.yaml")
    train.main(["--config", config])
    run = tmp_path / "run"
    before = (run / "epoch_0002.ckpt").read_bytes()
    with pytest.raises(RunFolderError, match=rf"{run} holds an earlier run's checkpoints \(.*epoch_0002.ckpt\): "
                                             r"continue it with --resume auto, or start afresh in a new --output_dir "
                                             r"or with --replace_run true"):
        train.main(["--config", config, "--epochs", "1"])
    assert (run / "epoch_0002.ckpt").read_bytes() == before
    train.main(["--config", config, "--resume", "auto"])  # a finished run: nothing to do, nothing lost
    assert "2 of 2 epochs done" in capsys.readouterr().out
    for report in ("eval_best_test.json", "eval_best_test.png"):  # validate.py's report of the old best.ckpt
        (run / report).write_text("of the earlier run")
    train.main(["--config", config, "--epochs", "1", "--replace_run", "true"])
    assert sorted(p.name for p in run.glob("*.ckpt")) == ["best.ckpt", "epoch_0001.ckpt"]  # none of the old run
    assert not list(run.glob("eval_*"))
    assert ("replace_run: removed the earlier run's checkpoints and records and its 2 evaluation report file(s)"
            in capsys.readouterr().out)


def test_a_resume_names_every_changed_key_and_refuses_those_that_change_the_run(tmp_path, capsys):
    config = write_config(tiny_config(tmp_path, **QUICK), tmp_path / "cfg.yaml")
    train.main(["--config", config])
    recipe = tmp_path / "run" / "config.yaml"
    saved = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**saved, "lr": 0.5, "batch_size": 4}, sort_keys=False))  # edited by hand
    with pytest.raises(RunFolderError, match=r"differs from .*config.yaml in batch_size \(4 -> 8\), lr "
                                             r"\(0.5 -> 0.01\); .* pass --allow_changed_recipe true"):
        train.main(["--config", config, "--resume", "auto", "--epochs", "2"])
    recipe.write_text(yaml.safe_dump(saved, sort_keys=False))
    train.main(["--config", config, "--resume", "auto", "--epochs", "2", "--log_interval", "2"])
    out = capsys.readouterr().out
    assert "applying the keys that differ from" in out and "epochs (1 -> 2), log_interval (1 -> 2)" in out
    assert "1 of 2 epochs done" in out and yaml.safe_load(recipe.read_text())["epochs"] == 2
    train.main(["--config", config, "--resume", "auto", "--epochs", "3", "--lr", "0.02",
                "--allow_changed_recipe", "true"])
    out = capsys.readouterr().out  # log_interval is back to the command's 1
    assert "epochs (2 -> 3), lr (0.01 -> 0.02), log_interval (2 -> 1) (allowed by --allow_changed_recipe)" in out
    train.main(["--resume", str(tmp_path / "run"), "--epochs", "4"])  # the recipe from the folder itself
    out = capsys.readouterr().out
    assert "3 of 4 epochs done" in out and "lr (" not in out


@pytest.mark.parametrize("schedule, what", [(dict(scheduler="cosine"), "the cosine schedule's length"),
                                            (dict(warmup_epochs=1.5), "the warm-up's length")])
def test_epochs_cannot_change_on_a_resume_when_the_lr_schedule_depends_on_them(tmp_path, schedule, what):
    config = write_config(tiny_config(tmp_path, **{**QUICK, **schedule}), tmp_path / "cfg.yaml")
    train.main(["--config", config])
    with pytest.raises(RunFolderError, match=rf"in epochs \(1 -> 2\) \(epochs sets {what}\)"):
        train.main(["--config", config, "--resume", "auto", "--epochs", "2"])


@pytest.mark.parametrize("main, flags, message", [
    (train.main, ["--ckpt_path", "x.ckpt"], "--ckpt_path is not a flag of train.py: to start from weights use "
                                            "--pretrained; to continue a run --resume"),
    (train.main, ["--mindir", "x.onnx"], "--mindir is not a flag of train.py: it is read by validate.py"),
    (validate.main, ["--ckpt_path", "x.ckpt", "--lr", "0.1"], "--lr is not a flag of validate.py: it is read by "
                                                              "train.py"),
    (export.main, ["--batch_size", "4"], "--batch_size is not a flag of export.py: the exported batch is "
                                         "--static_batch"),
    (predict.main, ["--images", "x.png", "--epochs", "3"], "--epochs is not a flag of predict.py: it is read by "
                                                           "train.py"),
], ids=["train ckpt_path", "train mindir", "validate lr", "export batch_size", "predict epochs"])
def test_a_flag_of_another_entry_point_is_an_error_naming_where_it_belongs(main, flags, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        main(flags + ["--image_size", "0"])  # were the flag taken, the run would stop here, not train


def test_train_with_a_mindcv_habit_stops_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--ckpt_path", "/nonexistent/x.ckpt", "--output_dir",
                             str(tmp_path), "--image_size", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "train.py: error: --ckpt_path is not a flag of train.py: to start from weights use --pretrained; "
        "to continue a run --resume"]
