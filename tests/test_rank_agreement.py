"""Ranks started with different configs, data or code stop on every rank before the first step, naming the
keys and the ranks (src/distributed/agreement.py).

The launches are real `mpirun` MPMD jobs of train.py (`-n 1 python train.py A : -n 1 python train.py B`) on this
host; the check runs before the network is built, so the model named in the config is never compiled.
"""
import os
import shutil
import subprocess
import sys
import time

import pytest

from src.config import Config, default_splits
from src.data.dataset import DatasetInfo
from src.distributed import DistInfo
from src.distributed import agreement
from src.distributed.agreement import (HOST_LOCAL_KEYS, RanksDisagree, check_ranks_agree, code_fingerprint,
                                       disagreements, run_fingerprint)
from tests.data_fixtures import make_idx_dataset
from tests.engine_fixtures import tiny_config, write_config
from tests.test_distributed import needs_mpi

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_disagreements_name_each_differing_key_and_the_ranks_holding_each_value():
    fingerprints = [{"config:batch_size": "8", "config:seed": "42", "code:src/a.py": "aa"},
                    {"config:batch_size": "16", "config:seed": "42", "code:src/a.py": "aa"},
                    {"config:batch_size": "8", "config:seed": "42", "code:src/a.py": "bb", "code:src/b.py": "cc"}]
    assert disagreements(fingerprints) == [
        "code:src/a.py: aa on rank 0, 1; bb on rank 2",
        "code:src/b.py: (absent) on rank 0, 1; cc on rank 2",
        "config:batch_size: 8 on rank 0, 2; 16 on rank 1",
    ]
    assert disagreements(fingerprints[:1] * 3) == []
    long_value = {"train data:class_names": '["' + "x" * 200 + '"]'}
    (line,) = disagreements([long_value, {}])
    assert len(line) < 120 and line.endswith("(absent) on rank 1")


def test_one_process_needs_no_collective(monkeypatch):
    """A single process gathers nothing (there is no cluster to gather from); two ranks gather and compare."""
    gathered = []

    def gather(fingerprint):
        gathered.append(fingerprint)
        return [fingerprint, {"anything": "2"}]

    monkeypatch.setattr(agreement, "gather_json", gather)
    assert check_ranks_agree(DistInfo(), {"anything": "1"}) is None and gathered == []
    with pytest.raises(RanksDisagree, match=r"rank 1 of 2: .*\n  anything: 1 on rank 0; 2 on rank 1$"):
        check_ranks_agree(DistInfo(rank=1, world_size=2), {"anything": "1"})
    assert gathered == [{"anything": "1"}]


def test_the_fingerprint_holds_config_data_and_code_but_not_host_local_paths(tmp_path):
    cfg = Config(batch_size=8)
    default_splits(cfg)
    info = DatasetInfo(num_classes=2, class_names=["a", "b"], num_samples=5, in_channels=1, mean=(0.5,),
                       std=(0.25,))
    fingerprint = run_fingerprint(cfg, {"train": info})
    assert fingerprint["config:batch_size"] == "8" and fingerprint["train data:class_names"] == '["a", "b"]'
    assert fingerprint["train data:num_samples"] == "5" and fingerprint["train data:mean"] == "[0.5]"
    assert not any(f"config:{key}" in fingerprint for key in HOST_LOCAL_KEYS)
    assert "code:train.py" in fingerprint and "code:src/distributed/agreement.py" in fingerprint
    assert any(key.endswith(".cc") for key in fingerprint)  # the C++ kernels are code too
    other = run_fingerprint(Config(batch_size=8, data_dir="/elsewhere", num_workers=7, train_split="train",
                                   val_split="test"), {"train": info})
    assert other == fingerprint

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x = 1\n")
    before = code_fingerprint(str(tmp_path))
    (tmp_path / "src" / "m.py").write_text("x = 2\n")
    assert before.keys() == {"code:src/m.py"} and code_fingerprint(str(tmp_path)) != before


def _mpmd(rank0: list, rank1: list, timeout=240):
    """`mpirun -n 1 RANK0 : -n 1 RANK1` from the repo; returns (CompletedProcess, seconds)."""
    command = ["mpirun", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    command += ["-n", "1", *rank0, ":", "-n", "1", *rank1]
    start = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


def _config(tmp_path):
    """A tiny Fashion-MNIST-format run of ghostnet_050 (never built: the check stops the job before)."""
    cfg = tiny_config(tmp_path, model="ghostnet_050", epochs=1, max_steps_per_epoch=1)
    return cfg, write_config(cfg, tmp_path / "run.yaml")


def _assert_stopped_on_both_ranks(result, seconds, cfg, expected_lines, label):
    output = result.stdout + result.stderr
    print(f"{label}: exit {result.returncode} after {seconds:.0f} s\n{result.stderr[-2000:]}")
    assert result.returncode != 0, output[-3000:]
    for rank in (0, 1):
        assert f"error: rank {rank} of 2: the ranks were started with different configs, code or data" in output
    for line in expected_lines:
        assert output.count(line) == 2, (line, output[-3000:])  # each rank names it
    assert "M parameters" not in output  # stopped before the network was built
    assert not os.path.exists(os.path.join(cfg.output_dir, "config.yaml"))


@needs_mpi
def test_ranks_with_different_config_and_data_stop_naming_the_keys(tmp_path):
    cfg, config = _config(tmp_path)
    other_data = make_idx_dataset(str(tmp_path / "other"), n_train=120, n_test=40, size=16)
    train = [sys.executable, "train.py", "--config", config]
    result, seconds = _mpmd(train + ["--batch_size", "8"],
                            train + ["--batch_size", "16", "--seed", "7", "--data_dir", other_data])
    _assert_stopped_on_both_ranks(result, seconds, cfg, [
        "config:batch_size: 8 on rank 0; 16 on rank 1",
        "config:seed: 42 on rank 0; 7 on rank 1",
        "train data:num_samples: 96 on rank 0; 120 on rank 1",
    ], "batch_size / seed / dataset size")
    assert "config:data_dir" not in result.stdout + result.stderr  # a host-local path; its data is compared


@needs_mpi
def test_ranks_running_different_code_stop_naming_the_file(tmp_path):
    cfg, config = _config(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv*", "outputs", "__pycache__"))
    with open(copy / "src" / "engine" / "loss.py", "a", encoding="utf-8") as f:
        f.write("# edited on one host only\n")
    result, seconds = _mpmd([sys.executable, "train.py", "--config", config],
                            [sys.executable, str(copy / "train.py"), "--config", config])
    _assert_stopped_on_both_ranks(result, seconds, cfg, ["code:src/engine/loss.py: "], "code")
    assert "code:src/engine/trainer.py" not in result.stdout + result.stderr  # only the edited file differs
