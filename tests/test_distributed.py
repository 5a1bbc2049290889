"""Data-parallel training under `mpirun -n 2` on CPU (src/distributed): the same weights as one process with the
combined batch, validation split across the ranks and summed (BN statistics averaged first), and a job that
ends when one rank dies.

The multi-process tests launch tests/distributed_worker.py (train.py's main plus a dump of each rank's weights,
batches and validation report); each launch costs about 25 s of cluster start-up, so they are few. They are
skipped when mpirun or mpi4py is missing (under CI: failed, tests/capabilities.py).
"""
import json
import os
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

from src.data import create_dataset
from src.engine.evaluate import evaluate
from src.engine.metrics import ClassificationMeter
from tests import capabilities
from tests.data_fixtures import make_idx_dataset
from tests.engine_fixtures import TinyNet, TinyPlainNet, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "distributed_worker.py")
N_TRAIN, N_VAL, BATCH = 16, 41, 8  # 41: the validation set does not split evenly over 2 ranks


needs_mpi = capabilities.needs("mpirun", "mpi4py")


def _mpirun(tmp_path, config, out_dir, *extra, timeout=300):
    """`mpirun -n 2` of the worker; returns (CompletedProcess, seconds). A hang fails on the timeout."""
    command = ["mpirun", "-n", "2", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    command += [sys.executable, WORKER, config, str(out_dir), *extra]
    start = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


def _configs(tmp_path):
    """(one-process config with batch 2 x BATCH, two-rank config with BATCH per rank) over the same data.

    tiny_plain_net has no BatchNorm (per-device batch statistics would make the runs differ) and no dropout;
    hflip 0 and a random resized crop of scale = ratio = 1 (the whole 16 px image) leave no augmentation
    randomness. Training always shuffles, and MindSpore's sharded shuffle (DistributedSampler) draws a different
    permutation from the one-process shuffle (checked by hand: seed 1, 10 samples); only without shuffling do
    shards interleave (rank i takes samples i, i + N, ...). So an epoch is a single step here: 16 samples, one
    batch of 16 or two of 8, and the union of the ranks' batches is that epoch's whole set in both runs.
    """
    data_dir = make_idx_dataset(str(tmp_path / "data"), n_train=N_TRAIN, n_test=N_VAL, size=16)
    common = dict(model="tiny_plain_net", data_dir=data_dir, scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0,
                  epochs=4, eval_batch_size=BATCH, optimizer="sgd", momentum=0.9, lr=0.1, weight_decay=1e-4,
                  warmup_epochs=0.0, log_interval=1)
    single = tiny_config(tmp_path, batch_size=2 * BATCH, output_dir=str(tmp_path / "single_run"), **common)
    double = tiny_config(tmp_path, batch_size=BATCH, output_dir=str(tmp_path / "dist_run"), **common)
    return (single, write_config(single, tmp_path / "single.yaml"),
            double, write_config(double, tmp_path / "dist.yaml"))


def _load(out_dir, rank):
    with open(os.path.join(out_dir, f"rank{rank}.json"), encoding="utf-8") as f:
        dump = json.load(f)
    return dump, dict(np.load(os.path.join(out_dir, f"rank{rank}.npz")))


def check_same_as_one_process(single_cfg, single_dir, dist_dir, ranks: int, run_dir):
    """The worker dumps of a `ranks`-rank run (dist_dir) against those of one process with the combined batch
    (single_dir): the ranks drew disjoint parts of every step's batch, hold identical weights equal to the single
    run's up to float rounding, validated disjoint shards of the whole set, and report (and train.py's last
    metrics.json row in run_dir says) exactly what one process evaluating those weights finds."""
    dumps = [_load(dist_dir, rank) for rank in range(ranks)]
    one, single_weights = _load(single_dir, 0)
    assert [dump["world_size"] for dump, _ in dumps] == [ranks] * ranks and one["world_size"] == 1
    # Every step the ranks drew disjoint parts of the epoch's 16 samples; the single run drew all 16. 4 epochs of
    # one step each: 4 batches per rank.
    assert [len(dump["batches"]) for dump, _ in dumps] == [4] * ranks and len(one["batches"]) == 4
    for step, batch in enumerate(one["batches"]):
        parts = [dump["batches"][step] for dump, _ in dumps]
        assert [len(part) for part in parts] == [N_TRAIN // ranks] * ranks
        assert sorted(sum(parts, [])) == sorted(batch) == list(range(N_TRAIN))
    # Identical weights on every rank, equal to the single run's up to float rounding.
    weights0 = dumps[0][1]
    assert weights0.keys() == single_weights.keys()
    for _, weights in dumps[1:]:
        assert weights.keys() == weights0.keys()
        for name in weights0:
            np.testing.assert_array_equal(weights[name], weights0[name], err_msg=name)
    for name in weights0:
        np.testing.assert_allclose(weights0[name], single_weights[name], atol=1e-5, err_msg=name)

    # Validation: every image on exactly one rank (rank r takes images r, r + ranks, ...), no padding.
    shards = [dump["val_samples"] for dump, _ in dumps]
    assert [len(shard) for shard in shards] == [len(range(rank, N_VAL, ranks)) for rank in range(ranks)]
    assert sorted(sum(shards, [])) == list(range(N_VAL))
    # Every rank reports the whole set, exactly as one process evaluating the same weights.
    network = TinyPlainNet(num_classes=10, in_channels=1)
    for param in network.get_parameters():
        param.set_data(ms.Tensor(weights0[param.name]))
    val_data, _ = create_dataset(single_cfg, single_cfg.val_split, training=False)
    expected = evaluate(network, val_data, 10)
    for dump, _ in dumps:
        report = dump["report"]
        assert report["num_samples"] == N_VAL
        assert report["confusion_matrix"] == expected["confusion_matrix"]
        assert (report["top1"], report["top5"]) == (expected["top1"], expected["top5"])
        assert report["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    # train.py's per-epoch validation (rank 0 writes metrics.json) is the same summed evaluation.
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        last = json.load(f)["epochs"][-1]
    assert (last["val_top1"], last["val_top5"]) == (expected["top1"], expected["top5"])
    assert last["val_loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_meter_states_of_shards_sum_to_the_meter_of_the_whole_set():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(41, 7)), rng.integers(0, 7, size=41)
    whole = ClassificationMeter(7)
    whole.update(logits, labels)
    shards = [ClassificationMeter(7) for _ in range(3)]
    for rank, meter in enumerate(shards):  # shards of 14, 14 and 13 samples, in batches of 4 and a remainder
        shard_logits, shard_labels = logits[rank::3], labels[rank::3]
        for start in range(0, len(shard_labels), 4):
            meter.update(shard_logits[start:start + 4], shard_labels[start:start + 4])
    merged = ClassificationMeter(7)
    merged.load_state(sum(m.state() for m in shards))
    expected, got = whole.report(), merged.report()
    assert got["confusion_matrix"] == expected["confusion_matrix"] and got["num_samples"] == 41
    assert (got["top1"], got["top5"]) == (expected["top1"], expected["top5"])
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-12)
    with pytest.raises(ValueError, match="does not belong to a 5-class meter"):
        ClassificationMeter(5).load_state(merged.state())


@needs_mpi
def test_two_ranks_train_and_validate_as_one_process_with_the_combined_batch(tmp_path):
    """4 steps of 2 x 8 images under mpirun vs 4 steps of 16 in one process, on a model without BatchNorm or
    dropout and without augmentation randomness, one step per epoch (see `_configs` for why)."""
    single_cfg, single_yaml, _, dist_yaml = _configs(tmp_path)
    result, seconds = _mpirun(tmp_path, dist_yaml, tmp_path / "dist")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    single = subprocess.run([sys.executable, WORKER, single_yaml, str(tmp_path / "single")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    print(f"mpirun -n 2 run: {seconds:.0f} s")

    check_same_as_one_process(single_cfg, tmp_path / "single", tmp_path / "dist", 2, tmp_path / "dist_run")
    assert "2 device(s)" in result.stdout and result.stdout.count("epoch 4/4 done") == 1  # rank 0 prints
    for rank in (0, 1):  # each rank's first line says what it got: the config's 1 worker fits any host's share
        assert (f"rank {rank} of 2 (local {rank} of 2 on this host): CPU (no device id on CPU), 1 data "
                f"worker(s) per stage ({os.cpu_count()} CPUs / 2 local rank(s))") in result.stdout


@needs_mpi
def test_bn_statistics_are_averaged_so_both_ranks_validate_one_model(tmp_path):
    """With BatchNorm each rank's moving statistics follow its own batches; validation first averages them, so
    both ranks end with identical parameters and the summed report is that model's on the whole set."""
    single_cfg, _, double, _ = _configs(tmp_path)
    double.model, double.epochs = "tiny_net", 2
    result, _ = _mpirun(tmp_path, write_config(double, tmp_path / "bn.yaml"), tmp_path / "bn")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (rank0, weights0), (rank1, weights1) = _load(tmp_path / "bn", 0), _load(tmp_path / "bn", 1)
    assert {"bn1.moving_mean", "bn2.moving_variance"} <= weights0.keys()
    assert np.abs(weights0["bn1.moving_mean"]).max() > 0  # the statistics moved away from their initial zeros
    for name in weights0:
        np.testing.assert_allclose(weights0[name], weights1[name], rtol=1e-6, atol=1e-7, err_msg=name)
    network = TinyNet(num_classes=10, in_channels=1)
    for param in network.get_parameters():
        param.set_data(ms.Tensor(weights0[param.name]))
    val_data, _ = create_dataset(single_cfg, single_cfg.val_split, training=False)
    expected = evaluate(network, val_data, 10)
    assert rank0["report"]["confusion_matrix"] == rank1["report"]["confusion_matrix"] == expected[
        "confusion_matrix"]
    assert rank0["report"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)


@needs_mpi
@pytest.mark.parametrize("failure", ["kill", "raise"])
def test_a_rank_that_dies_ends_the_job_quickly_and_is_named(tmp_path, failure):
    """Rank 1 dies (SIGKILL, or an uncaught exception) as its second epoch starts, while rank 0 waits in the
    gradient all-reduce: mpirun must end the job with a non-zero status within seconds, not hang."""
    _, _, _, dist_yaml = _configs(tmp_path)
    out_dir = tmp_path / "out"
    result, seconds = _mpirun(tmp_path, dist_yaml, out_dir, "--fail", failure)
    ended = time.time()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    with open(out_dir / "failed_at", encoding="utf-8") as f:
        after_failure = ended - float(f.read())
    print(f"{failure}: the job ended {after_failure:.1f} s after the failure ({seconds:.0f} s in all)")
    assert after_failure < 20, output[-3000:]  # without the abort hook an exception took ~40 s (heartbeat)
    if failure == "kill":
        assert "process rank 1 with PID" in output and "signal 9" in output, output[-3000:]
    else:
        assert "rank 1 of 2 failed (RuntimeError: injected failure on rank 1); ending the job" in output
    assert not (out_dir / "rank0.json").exists()  # rank 0 never finished its training
