"""Reliability: bad inputs rejected before any graph compiles, with a message naming the problem; checkpoint
integrity (truncation, corruption, a crash during a save); SIGTERM / SIGKILL mid-epoch and an exact resume;
non-finite losses that change no weight and stop the run.

The bad-input table goes through train.main, as a user meets each case; it adds the cases that tests/test_config.py,
test_data.py, test_validate.py, test_train.py and test_export.py lack, and repeats a few of theirs end to end.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

import train
from src.atomic_files import copy_atomic, write_atomic, write_json_atomic
from src.checkpoint import CheckpointError, load_weights, read_checkpoint, save_checkpoint
from src.config import Config, ConfigError
from src.data import DatasetError, DatasetNotFoundError
from src.engine.interrupt import TrainingInterrupted
from src.engine.loss import SoftTargetCrossEntropy
from src.engine.lr_schedule import build_lr_schedule
from src.engine.nonfinite import NonFiniteLossError
from src.engine.optim import create_optimizer
from src.engine.run_state import RunCheckpoints, TrainingState
from src.engine.step_values import PendingSteps
from src.engine.train_step import TrainStep, create_loss_scaler
from src.engine.trainer import Trainer
from tests.data_fixtures import make_idx_dataset, make_image_folder, make_oxford_pets, write_idx
from tests.engine_fixtures import TinyNet, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- bad inputs: (description, setup(tmp_path) -> train.py arguments, error, message regex) ------------------------

def _weights(path, **net_options):
    save_checkpoint(str(path), {p.name: p for p in TinyNet(**net_options).get_parameters()}, {"model": "tiny_net"})
    return str(path)


def _truncated(path):
    data = open(_weights(path), "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    return str(path)


def _yaml(tmp_path, text):
    (tmp_path / "bad.yaml").write_text(text)
    return ["--config", str(tmp_path / "bad.yaml")]


def _empty(tmp_path, name):
    os.makedirs(tmp_path / name)
    return str(tmp_path / name)


def _idx_with_labels(tmp_path, n):
    data_dir = make_idx_dataset(str(tmp_path / "short"), n_train=16, n_test=4, size=16, gz=False)
    write_idx(os.path.join(data_dir, "train-labels-idx1-ubyte"), np.zeros(n, np.uint8))
    return data_dir


def _pets(tmp_path, line):
    root = make_oxford_pets(str(tmp_path / "pets"))
    with open(os.path.join(root, "annotations", "trainval.txt"), "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return root


def _folder(tmp_path, empty_class=False, bad_image=False):
    root = make_image_folder(str(tmp_path / "folder"), per_class={"train": 4, "val": 2}, classes=3)
    if empty_class:
        for name in os.listdir(os.path.join(root, "train", "class_2")):
            os.remove(os.path.join(root, "train", "class_2", name))
    if bad_image:
        with open(os.path.join(root, "train", "class_1", "1_0001.jpg"), "wb") as f:
            f.write(b"this is no jpeg")
    return root


def _blocked_output(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    return str(tmp_path / "a_file" / "run")


BAD_INPUTS = [
    # config files and keys
    ("YAML that is not a mapping", lambda t: _yaml(t, "- lr\n- 0.1\n"), ConfigError,
     r"config file .*bad\.yaml must be a mapping of key: value"),
    ("YAML with bad syntax", lambda t: _yaml(t, "lr: [0.1\nepochs: 2\n"), ConfigError,
     r"config file .*bad\.yaml is not valid YAML"),
    ("config file that does not exist", lambda t: ["--config", str(t / "nope.yaml")], ConfigError,
     r"config file not found: .*nope\.yaml"),
    ("mistyped new key", lambda t: ["--ckpt_interval_step", "5"], ConfigError,
     r"unknown config key 'ckpt_interval_step' on the command line \(did you mean 'ckpt_interval_steps'\?\)"),
    ("wrong type of a new key", lambda t: ["--max_nonfinite_steps", "many"], ConfigError,
     r"config key 'max_nonfinite_steps' expects int, got 'many'"),
    ("negative step checkpoint interval", lambda t: ["--ckpt_interval_steps", "-1"], ConfigError,
     r"'ckpt_interval_steps' must be at least 0, got -1"),
    ("max_nonfinite_steps 0", lambda t: ["--max_nonfinite_steps", "0"], ConfigError,
     r"'max_nonfinite_steps' must be at least 1, got 0"),
    ("unknown bad_images policy", lambda t: ["--bad_images", "ignore"], ConfigError,
     r"'bad_images' must be one of error, skip, got 'ignore'"),
    ("unknown model", lambda t: ["--model", "ghostnet_10"], ConfigError,
     r"config key 'model': unknown model 'ghostnet_10'; did you mean"),
    ("unknown optimizer", lambda t: ["--optimizer", "adamw2"], ConfigError,
     r"'optimizer' must be one of sgd, rmsprop, adam, adamw, got 'adamw2' \(did you mean 'adamw'\?\)"),
    ("batch_size 0", lambda t: ["--batch_size", "0"], ConfigError, r"'batch_size' must be at least 1, got 0"),
    ("negative lr", lambda t: ["--lr", "-0.01"], ConfigError, r"'lr' must be greater than 0, got -0.01"),
    # data
    ("missing data folder", lambda t: ["--data_dir", str(t / "absent")], DatasetNotFoundError,
     r"data_dir not found: .*absent"),
    ("empty data folder (IDX)", lambda t: ["--data_dir", _empty(t, "empty")], DatasetNotFoundError,
     r"IDX file .*empty/train-images-idx3-ubyte\[\.gz\] not found"),
    ("empty data folder (image folders)", lambda t: ["--dataset", "folder", "--data_dir", _empty(t, "empty")],
     DatasetNotFoundError, r"split folder .*empty/train not found \(folders in .*empty: \[\]\)"),
    ("empty class folder", lambda t: ["--dataset", "folder", "--data_dir", _folder(t, empty_class=True)],
     DatasetError, r"class folder .*train/class_2 holds no images"),
    ("IDX labels that do not match the images", lambda t: ["--data_dir", _idx_with_labels(t, 15)], DatasetError,
     r"train-labels-idx1-ubyte has 15 labels but .*train-images-idx3-ubyte has 16 images"),
    ("Pets annotation line without a class id", lambda t: ["--dataset", "pets", "--data_dir",
                                                          _pets(t, "Bengal_99")],
     DatasetError, r"trainval\.txt:7: expected 'image_name class_id species breed_id', got 'Bengal_99'"),
    ("Pets annotation naming a breed under another's id", lambda t: ["--dataset", "pets", "--data_dir",
                                                                    _pets(t, "Birman_98 1 1 3")],
     DatasetError, r"class id 1 in .*annotations is listed for both 'Abyssinian' and 'Birman' images"),
    ("num_classes that does not fit the data", lambda t: ["--num_classes", "5"], ConfigError,
     r"config key 'num_classes' is 5 but the fashion_mnist data in .* has 10 classes"),
    # run folder and checkpoints
    ("output folder that cannot be written", lambda t: ["--output_dir", _blocked_output(t)], ConfigError,
     r"config key 'output_dir': cannot write to .*a_file/run: Not a directory"),
    ("--resume of a missing file", lambda t: ["--resume", str(t / "missing.ckpt")], CheckpointError,
     r"checkpoint file not found: .*missing\.ckpt"),
    ("--pretrained of a missing file", lambda t: ["--pretrained", str(t / "missing.ckpt")], CheckpointError,
     r"checkpoint file not found: .*missing\.ckpt"),
    ("--resume of a truncated checkpoint", lambda t: ["--resume", _truncated(t / "cut.ckpt")], CheckpointError,
     r"cannot read checkpoint file .*cut\.ckpt \(truncated or corrupt\?\)"),
    ("--pretrained of another model's checkpoint", lambda t: ["--pretrained", _weights(t / "wide.ckpt", width=16)],
     CheckpointError, r"checkpoint .*wide\.ckpt \(it was written for model tiny_net\) does not fit the model:\n"
                      r"  wrong shape.*conv_stem\.weight \(16, 1, 3, 3\) vs \(8, 1, 3, 3\)"),
    ("--resume of weights only (no training state)", lambda t: ["--resume", _weights(t / "best.ckpt")],
     CheckpointError, r"checkpoint .*best\.ckpt .*does not fit this run's training state:\n"
                      r"  missing from the checkpoint .*state\.optimizer\."),
    ("--resume of a checkpoint with another num_classes", lambda t: ["--resume",
                                                                    _weights(t / "three.ckpt", num_classes=3)],
     CheckpointError, r"(?s)three\.ckpt .*wrong shape.*classifier\.weight \(3, 16\) vs \(10, 16\)"),
]


@pytest.mark.parametrize("description, setup, error, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_named_before_training(tmp_path, capsys, description, setup, error, message):
    cfg = write_config(tiny_config(tmp_path, epochs=1), tmp_path / "cfg.yaml")
    args = setup(tmp_path)
    argv = args if args[0] == "--config" else ["--config", cfg, *args]
    with pytest.raises(error, match=message):
        train.main(argv)
    assert "step 1/" not in capsys.readouterr().out  # nothing trained


def test_unreadable_training_image_is_an_error_or_skipped_as_configured(tmp_path, capsys, caplog):
    data_dir = _folder(tmp_path, bad_image=True)
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, batch_size=4, epochs=1, in_channels=None,
                      max_steps_per_epoch=3, hflip=0.0, log_interval=1)
    with pytest.raises(RuntimeError, match=r"(?s)cannot decode image .*1_0001\.jpg: .*set bad_images: skip"):
        train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml"), "--bad_images", "skip"])
    assert "epoch 1/1 done" in capsys.readouterr().out
    assert re.search(r"skipping unreadable image .*1_0001\.jpg .*1 skipped so far", caplog.text)


# --- checkpoint integrity --------------------------------------------------------------------------------------------

def test_truncated_or_flipped_checkpoint_names_the_file(tmp_path):
    path = _weights(tmp_path / "w.ckpt")
    data = open(path, "rb").read()
    # Cut between two entries, protobuf parses what is left: the entry count written first catches it.
    for cut in range(len(data) - 1, 0, -1):
        (tmp_path / "cut.ckpt").write_bytes(data[:cut])
        try:
            if len(ms.load_checkpoint(str(tmp_path / "cut.ckpt"))) == 14:
                break
        except (ValueError, RuntimeError):
            continue
    with pytest.raises(CheckpointError, match=r"checkpoint file .*cut\.ckpt is truncated: it holds 14 of the 15 "
                                              r"entries written"):
        read_checkpoint(str(tmp_path / "cut.ckpt"))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # inside a tensor: the CRC catches it
    (tmp_path / "flipped.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint file .*flipped\.ckpt \(truncated or corrupt"):
        load_weights(TinyNet(), str(tmp_path / "flipped.ckpt"))


@pytest.mark.parametrize("crash", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "interrupted"])
def test_crash_during_a_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, crash):
    path = _weights(tmp_path / "epoch_0001.ckpt")
    before = open(path, "rb").read()
    real_save = ms.save_checkpoint

    def save_half_then_crash(items, tmp, **kwargs):
        real_save(items, tmp, **kwargs)
        with open(tmp, "r+b") as f:
            f.truncate(os.path.getsize(tmp) // 2)
        raise crash

    monkeypatch.setattr(ms, "save_checkpoint", save_half_then_crash)
    with pytest.raises(type(crash)):
        save_checkpoint(path, {p.name: p for p in TinyNet(width=4).get_parameters()}, {"epoch": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["epoch_0001.ckpt"]  # no temporary file left behind
    assert open(path, "rb").read() == before
    assert load_weights(TinyNet(), path) == "trained"


@pytest.mark.parametrize("crash", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "interrupted"])
def test_crash_while_writing_a_report_leaves_the_previous_one(tmp_path, crash):
    """metrics.json, config.yaml, evaluation reports, results pages and comparison records all go through
    write_atomic: a write that dies half-way leaves the previous file whole and no temporary file."""
    path = str(tmp_path / "metrics.json")
    write_json_atomic(path, {"epochs": [1, 2]})

    def write_half_then_crash(f):
        f.write('{"epochs": [1, 2, ')
        raise crash

    with pytest.raises(type(crash)):
        write_atomic(path, write_half_then_crash)
    with pytest.raises(FileNotFoundError):  # a record copied from a run directory that is gone
        copy_atomic(str(tmp_path / "missing" / "metrics.json"), path)
    assert os.listdir(tmp_path) == ["metrics.json"]
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == {"epochs": [1, 2]}


def test_resumable_checkpoints_newest_first_and_rotated(tmp_path):
    runs = RunCheckpoints(str(tmp_path), keep=2)
    net = TinyNet()
    state = TrainingState(net, create_optimizer(Config(epochs=1), net.trainable_params(), np.ones(2, np.float32)))
    runs.save_epoch(state, 1)
    for epoch, step in ((0, 5), (1, 3), (1, 8)):
        runs.save_step(state, epoch, step, epoch_loss_sum=1.5, epoch_correct=3, epoch_counted=step, epoch_seconds=2.5)
    assert [os.path.basename(p) for p in runs.resumable()] == ["epoch_0001_step_0008.ckpt",
                                                               "epoch_0001_step_0003.ckpt", "epoch_0001.ckpt"]
    assert read_checkpoint(runs.resumable()[0])[1] == {"epoch": 1, "epoch_step": 8, "epoch_loss_sum": 1.5,
                                                       "epoch_correct": 3, "epoch_counted": 8, "epoch_seconds": 2.5}


# --- non-finite steps -------------------------------------------------------------------------------------------------

@pytest.fixture(params=["graph", "pynative"])
def mode(request):
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.mark.parametrize("loss_scale", ["none", "dynamic"])
def test_nonfinite_step_changes_no_weight_nor_bn_statistic(mode, loss_scale):
    cfg = Config(optimizer="sgd", lr=0.1, epochs=1, loss_scale=loss_scale)
    net = TinyNet(num_classes=4)
    optimizer = create_optimizer(cfg, net.trainable_params(), build_lr_schedule(cfg, 4))
    step = TrainStep(net, SoftTargetCrossEntropy(0.1), optimizer, loss_scaler=create_loss_scaler(cfg))
    step.set_train()
    labels = Tensor(np.eye(4, dtype=np.float32))
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    _, _, updated = step(Tensor(np.full((4, 1, 8, 8), np.nan, np.float32)), labels)
    assert int(updated.asnumpy()) == 0
    for p in net.get_parameters():  # BN moving statistics too: the NaN forward pass moved them, they are put back
        assert np.array_equal(p.asnumpy(), before[p.name]), p.name
    assert int(optimizer.global_step.asnumpy()[0]) == 0
    _, _, updated = step(Tensor(np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)), labels)
    assert int(updated.asnumpy()) == 1 and int(optimizer.global_step.asnumpy()[0]) == 1
    assert not np.array_equal(net.conv_stem.weight.asnumpy(), before["conv_stem.weight"])


def test_nonfinite_losses_in_a_row_stop_the_run_keeping_the_good_checkpoints(tmp_path, monkeypatch, capsys):
    nan_steps = {4, 5, 7, 8, 9}  # two in a row (tolerated), a finite one, then three in a row: stop
    calls = []
    real_call = TrainStep.__call__

    def poisoned(self, images, labels, *rest):
        calls.append(1)
        if len(calls) in nan_steps:
            images = Tensor(np.full(images.shape, np.nan, np.float32))
        return real_call(self, images, labels, *rest)

    monkeypatch.setattr(TrainStep, "__call__", poisoned)
    cfg = tiny_config(tmp_path, epochs=1, max_nonfinite_steps=3, ckpt_interval_steps=3, log_interval=1)
    with pytest.raises(NonFiniteLossError, match=(
            r"not finite .* for 3 consecutive steps, the last at epoch 1 step 9/12\. Those steps did not update "
            r"the weights and no checkpoint was written after them; the newest good one is "
            r".*epoch_0000_step_0006\.ckpt\. Try a lower lr \(now 0\.01\)")):
        train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    out = capsys.readouterr().out
    assert "epoch 1 step 4/12: " in out and "the weights were not updated (2 such step(s) in a row" in out
    run = tmp_path / "run"
    assert sorted(p for p in os.listdir(run) if p.endswith(".ckpt")) == ["epoch_0000_step_0003.ckpt",
                                                                          "epoch_0000_step_0006.ckpt"]
    tensors, meta = read_checkpoint(str(run / "epoch_0000_step_0006.ckpt"))
    assert meta["epoch_step"] == 6 and meta["epoch_counted"] == 4  # steps 4 and 5 did not count
    assert all(np.isfinite(t.asnumpy()).all() for t in tensors.values())


def test_step_values_are_read_at_the_progress_lines_and_a_streak_stops_the_run_at_the_next_read(
        tmp_path, monkeypatch, capsys):
    """log_interval 4: the steps' values are read at the first step (its time is the compile's) and at each
    progress line, four steps at a time. Steps 5-7 are not finite (max_nonfinite_steps 3): the streak is noticed
    at the read after step 8, and the error names step 7, the streak's last."""
    calls, reads = [], []
    real_call, real_read = TrainStep.__call__, PendingSteps.read

    def poisoned(self, images, labels, *rest):
        calls.append(1)
        if len(calls) in (5, 6, 7):
            images = Tensor(np.full(images.shape, np.nan, np.float32))
        return real_call(self, images, labels, *rest)

    def recording_read(self):
        values = real_read(self)
        reads.append([v.step + 1 for v in values])
        return values

    monkeypatch.setattr(TrainStep, "__call__", poisoned)
    monkeypatch.setattr(PendingSteps, "read", recording_read)
    cfg = tiny_config(tmp_path, epochs=1, max_nonfinite_steps=3, log_interval=4)
    with pytest.raises(NonFiniteLossError, match=r"for 3 consecutive steps, the last at epoch 1 step 7/12\. .*the "
                                                 r"newest good one is none \(no checkpoint written yet\)"):
        train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    assert [r for r in reads if r] == [[1], [2, 3, 4], [5, 6, 7, 8]] and len(calls) == 8
    out = capsys.readouterr().out
    assert re.search(r"epoch 1 step 5/12: .*, the weights were not updated \(1 such step\(s\) in a row", out)


# --- interruption and exact resume ------------------------------------------------------------------------------------

# train.py as a subprocess, on the tests' tiny_net, each step slowed down so that the test can act mid-epoch.
_CHILD = """
import os, runpy, sys, time
import src
import tests.engine_fixtures
from src.engine.train_step import TrainStep, create_loss_scaler
_call = TrainStep.__call__
def _slow(self, *args):
    time.sleep(float(os.environ["STEP_DELAY"]))
    return _call(self, *args)
TrainStep.__call__ = _slow
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""
_COMMON = dict(epochs=2, ema=True, ema_decay=0.9, log_interval=1, keep_checkpoints=3)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Final weights of the run the interrupted ones must reproduce."""
    root = tmp_path_factory.mktemp("whole")
    train.main(["--config", write_config(tiny_config(root, **_COMMON), root / "cfg.yaml")])
    return read_checkpoint(str(root / "run" / "epoch_0002.ckpt"))[0]


def _start(config, tmp_path, delay=0.15):
    stderr = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, "--config", config], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, "STEP_DELAY": str(delay)})
    watchdog = threading.Timer(150, proc.kill)  # a hung child fails the test instead of blocking it
    watchdog.daemon = True
    watchdog.start()
    return proc


def _read_until(proc, pattern):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            return "".join(lines)
    raise AssertionError(f"the run ended (status {proc.wait()}) before printing {pattern!r}:\n{''.join(lines)}")


def _assert_same_weights(run_dir, expected):
    resumed, meta = read_checkpoint(str(run_dir / "epoch_0002.ckpt"))
    assert meta["epoch"] == 2 and resumed.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(resumed[key].asnumpy(), expected[key].asnumpy(), atol=1e-6, rtol=0, err_msg=key)


def test_sigterm_mid_epoch_saves_and_the_resumed_run_ends_with_the_same_weights(tmp_path, capsys, uninterrupted):
    config = write_config(tiny_config(tmp_path, **_COMMON), tmp_path / "cfg.yaml")
    proc = _start(config, tmp_path)
    _read_until(proc, r"epoch 1/2  step 4/12 ")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    match = re.search(r"SIGTERM received: stopped at epoch 1, (\d+) of 12 steps done; saved (.*epoch_0000_step_"
                      r"(\d+)\.ckpt); continue with --resume auto", stderr)
    assert match and match[1] == str(int(match[3])) and 4 <= int(match[1]) < 12, stderr[-3000:]
    assert not os.path.exists(tmp_path / "run" / "epoch_0001.ckpt")

    train.main(["--config", config, "--resume", "auto"])
    out = capsys.readouterr().out
    assert f"resumed from {match[2]}: 0 of 2 epochs done, {match[1]} of 12 steps into epoch 1" in out
    assert f"skipped the {match[1]} batches of epoch 1" in out
    _assert_same_weights(tmp_path / "run", uninterrupted)
    # epoch 1's time is its whole time: the killed process's part (each step slept 0.15 s there) counts in it
    saved_seconds = read_checkpoint(match[2])[1]["epoch_seconds"]
    first_epoch = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"][0]
    assert saved_seconds >= 0.15 * int(match[1]) and first_epoch["train_time_s"] > saved_seconds
    resumed_seconds = first_epoch["train_time_s"] - saved_seconds  # the rate: of the steps this process ran
    assert first_epoch["images_per_s"] * resumed_seconds == pytest.approx((12 - int(match[1])) * 8)


def test_sigkill_resumes_from_the_last_good_step_checkpoint_with_the_same_weights(tmp_path, capsys, uninterrupted):
    config = write_config(tiny_config(tmp_path, ckpt_interval_steps=5, **_COMMON), tmp_path / "cfg.yaml")
    proc = _start(config, tmp_path)
    _read_until(proc, r"saved .*epoch_0001_step_0008\.ckpt")  # global steps 5, 10, 15, 20
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    newest = run / "epoch_0001_step_0008.ckpt"
    assert RunCheckpoints(str(run), 3).resumable()[0] == str(newest)
    newest.write_bytes(newest.read_bytes()[:1000])  # as if the machine died while it was written
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint file {newest}"):  # named, it is an error
        train.main(["--config", config, "--resume", str(newest)])

    with pytest.warns(RuntimeWarning, match=r"resume auto: skipping .*epoch_0001_step_0008\.ckpt: cannot read "
                                            r"checkpoint file .*epoch_0001_step_0008\.ckpt"):
        train.main(["--config", config, "--resume", "auto"])
    out = capsys.readouterr().out
    assert f"resumed from {run / 'epoch_0001_step_0003.ckpt'}: 1 of 2 epochs done, 3 of 12 steps into epoch 2" in out
    _assert_same_weights(run, uninterrupted)


def test_a_failure_in_validation_loses_no_training(tmp_path, monkeypatch, capsys, uninterrupted):
    """The epoch's training state is on disk before its validation starts: validation failing in epoch 1 leaves a
    checkpoint with all of epoch 1's batches done; the resumed run validates epoch 1 and ends as an uninterrupted
    one, and the epoch's checkpoint then replaces the one taken before validation."""
    real_validate = Trainer._validate

    def failing(self):
        raise RuntimeError("validation died")

    monkeypatch.setattr(Trainer, "_validate", failing)
    config = write_config(tiny_config(tmp_path, **_COMMON), tmp_path / "cfg.yaml")
    with pytest.raises(RuntimeError, match="validation died"):
        train.main(["--config", config])
    run = tmp_path / "run"
    assert RunCheckpoints(str(run), 3).resumable() == [str(run / "epoch_0000_step_0012.ckpt")]
    monkeypatch.setattr(Trainer, "_validate", real_validate)
    train.main(["--config", config, "--resume", "auto"])
    out = capsys.readouterr().out
    assert "0 of 2 epochs done, 12 of 12 steps into epoch 1" in out and "epoch 1/2 done" in out
    _assert_same_weights(run, uninterrupted)
    assert not list(run.glob("epoch_*_step_*.ckpt"))


def test_sigint_in_the_last_step_of_an_epoch_resumes_into_its_validation(tmp_path, monkeypatch, capsys,
                                                                           uninterrupted):
    """The signal handler itself, in-process: SIGINT during step 12 of 12 saves a checkpoint with every batch of
    epoch 1 consumed; the resumed run validates epoch 1, writes its checkpoint, and goes on."""
    calls = []
    real_call = TrainStep.__call__

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 12:  # between steps: during one, MindSpore's runtime turns SIGINT into SIGTERM
            os.kill(os.getpid(), signal.SIGINT)
        return real_call(self, *args)

    monkeypatch.setattr(TrainStep, "__call__", interrupted)
    config = write_config(tiny_config(tmp_path, **_COMMON), tmp_path / "cfg.yaml")
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN, not Python's default, under `cmd &` in a script
    with pytest.raises(TrainingInterrupted, match=r"SIGINT received: stopped at epoch 1, 12 of 12 steps done; saved "
                                                  r".*epoch_0000_step_0012\.ckpt") as stopped:
        train.main(["--config", config])
    assert stopped.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler was put back
    monkeypatch.undo()
    train.main(["--config", config, "--resume", "auto"])
    out = capsys.readouterr().out
    assert "0 of 2 epochs done, 12 of 12 steps into epoch 1" in out and "epoch 1/2 done" in out
    _assert_same_weights(tmp_path / "run", uninterrupted)
