"""scripts/compare_models.py end to end on generated Fashion-MNIST files (IDX, as distributed): every entry trains
in its own train.py process, the table holds each figure, Ghost entries are put against their s = 1 baseline, a
rerun with --reuse measures without retraining (keeping each run's memory and wall time, even when the comparison
stopped before writing its table), and bad entries are refused with a clear message."""
import json
import os

import pytest

from scripts.compare_models import CompareError, main as compare_main, parse_entry
from tests.data_fixtures import make_idx_dataset

ENTRIES = ["ghostnet_050", "ghost_vgg16:1", "ghost_vgg16:2"]


def test_every_entry_trains_under_the_shared_schedule_and_is_measured(tmp_path, capsys):
    data = make_idx_dataset(str(tmp_path / "fashion"), n_train=48, n_test=24)
    out = tmp_path / "cmp"
    flags = ["--models", *ENTRIES, "--output", str(out), "--latency_repeats", "2", "--data_dir", data,
             "--epochs", "1", "--batch_size", "16", "--eval_batch_size", "24", "--mode", "pynative",
             "--num_workers", "1", "--ema", "false", "--scheduler", "constant"]  # so that --epochs may grow
    assert compare_main(flags) == 0
    rows = {row["tag"]: row for row in json.loads((out / "comparison.json").read_text())["rows"]}
    assert list(rows) == ["ghostnet_050", "ghost_vgg16_s1", "ghost_vgg16_s2"]
    for tag, row in rows.items():
        assert os.path.isfile(out / tag / "best.ckpt")
        assert row["epochs"] == 1 and 0.0 <= row["top1_last"] <= row["top1_best"] <= 100.0
        assert row["latency_ms"] > 0 and row["train_time_s"] > 0 and row["wall_s"] >= row["train_time_s"]
        assert row["peak_rss_mib"] > 200  # a MindSpore training process, not this test's own figure
    # plain VGG-16, 10 classes: 14.99M params and 313.5M MACs on 3 channels; 1 channel here saves 1.18M MACs
    assert rows["ghost_vgg16_s1"]["params_m"] == pytest.approx(14.99, abs=0.01)
    assert rows["ghost_vgg16_s1"]["macs_m"] == pytest.approx(313.46 - 2 * 64 * 9 * 32 * 32 / 1e6, abs=0.05)
    ratio = rows["ghost_vgg16_s2"]["macs_m"] / rows["ghost_vgg16_s1"]["macs_m"]
    assert 0.45 < ratio < 0.6  # s = 2 halves the cost of the convs it replaces (the first conv stays plain)
    table = (out / "comparison.md").read_text().splitlines()
    assert len(table) == 2 + len(ENTRIES) and table[-1].startswith("| ghost_vgg16 | 2 |")
    assert f"| {rows['ghost_vgg16_s2']['params_m'] / rows['ghost_vgg16_s1']['params_m']:.2f} / {ratio:.2f} |" \
        in table[-1]
    assert table[-1] in capsys.readouterr().out

    checkpoint = out / "ghostnet_050" / "best.ckpt"
    written = checkpoint.stat().st_mtime_ns
    os.remove(out / "comparison.json")  # as after a comparison stopped before its table: each run kept its record
    assert compare_main(["--models", "ghostnet_050", *flags[1 + len(ENTRIES):], "--reuse"]) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == written
    reused = json.loads((out / "comparison.json").read_text())["rows"][0]
    for key in ("peak_rss_mib", "wall_s"):  # kept from the process that trained it
        assert reused[key] == rows["ghostnet_050"][key]

    # a longer schedule over the same runs: --reuse continues the run from its last checkpoint, not from scratch
    first_epoch = json.loads((out / "ghostnet_050" / "metrics.json").read_text())["epochs"][0]
    assert compare_main(["--models", "ghostnet_050", *flags[1 + len(ENTRIES):], "--reuse", "--epochs", "2"]) == 0
    out_text = capsys.readouterr().out
    assert "ghostnet_050: resuming the unfinished run" in out_text and "(1 of 2 epochs done)" in out_text
    assert "--resume auto" in out_text  # on the train.py command line it echoes
    metrics = json.loads((out / "ghostnet_050" / "metrics.json").read_text())["epochs"]
    assert [row["epoch"] for row in metrics] == [1, 2]
    assert metrics[0] == first_epoch  # its timings too: epoch 1 was kept, not trained again
    extended = json.loads((out / "comparison.json").read_text())["rows"][0]
    assert extended["epochs"] == 2 and extended["wall_s"] is None and extended["peak_rss_mib"] > 200


@pytest.mark.parametrize("argv, message", [
    (["--models", "ghost_vgg16:two"], "Ghost ratio after ':' must be a whole number"),
    (["--model", "ghostnet_100"], "--model is set per entry"),
    (["--ghost_ratio", "2"], "--ghost_ratio is set per entry"),
])
def test_bad_entries_are_refused_before_any_training(tmp_path, argv, message):
    with pytest.raises(CompareError, match=message):
        compare_main([*argv, "--output", str(tmp_path / "cmp")])
    assert parse_entry("ghost_vgg16:3") == ("ghost_vgg16", 3, "ghost_vgg16_s3")
