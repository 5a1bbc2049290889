"""scripts/compare_models.py --plan end to end on generated Fashion-MNIST files (IDX, as distributed), with tiny
GhostNetV2 / V3 arms: each run is judged as deployed (export.py, then validate.py on the MINDIR) and recorded as soon
as it ends; the records alone, without any checkpoint, rebuild the table; a record of another recipe or another
teacher is refused. The claim arithmetic is checked against figures worked out by hand."""
import glob
import json
import math
import os
import shutil

import pytest
import yaml

from scripts.compare_models import Claim, CompareError, judge_claim, load_plan, main as compare_main
from src.config import load_config
from tests.data_fixtures import make_idx_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAN = {
    "config": os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_fashion_mnist.yaml"),
    "seeds": [1, 2],
    "teacher": {"model": "ghostnet_050", "epochs": 2},
    "entries": [
        {"model": "ghostnetv2_100", "tag": "direct", "overrides": {"width": 0.25}},
        {"model": "ghostnetv3_100", "tag": "branches", "seeds": [1], "overrides": {"width": 0.25}},
        {"model": "ghostnetv3_100", "tag": "distilled", "seeds": [1], "distill": True,
         "overrides": {"width": 0.25, "kd_temperature": 2.0}},  # the teacher keeps its own width
    ],
    "claims": [{"text": "branches beat training directly", "better": "branches", "than": "direct"}],
}


def _write_plan(path, plan):
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def test_a_plan_records_every_run_as_deployed_and_rebuilds_its_table_from_the_records(tmp_path, capsys):
    data = make_idx_dataset(str(tmp_path / "fashion"), n_train=48, n_test=24)
    plan, out, records = _write_plan(tmp_path / "plan.yaml", PLAN), tmp_path / "out", tmp_path / "records"
    flags = ["--plan", plan, "--output", str(out), "--records", str(records), "--latency_repeats", "2",
             "--latency_rounds", "1", "--data_dir", data, "--epochs", "1", "--batch_size", "16",
             "--eval_batch_size", "24", "--mode", "pynative", "--num_workers", "1"]
    with pytest.raises(CompareError, match=r"--only nobody: not an entry of .*its entries: direct, branches, "):
        compare_main([*flags, "--only", "nobody"])

    def trained():
        printed = capsys.readouterr().out
        return [os.path.relpath(line.split("--output_dir ")[1].split()[0], out) for line in printed.splitlines()
                if line.startswith("== ") and "train.py" in line]

    # --only trains those entries' runs seed by seed, the teacher (2 epochs) just before the first distilling run,
    # and leaves the tables to a run of the whole plan, which trains the rest
    assert compare_main([*flags, "--only", "direct", "distilled"]) == 0
    assert trained() == ["direct/seed_1", "teacher_ghostnet_050", "distilled/seed_1", "direct/seed_2"]
    assert not (records / "comparison.json").exists()
    assert compare_main(flags) == 0
    assert trained() == ["branches/seed_1"]

    comparison = json.loads((records / "comparison.json").read_text())
    rows = {(row["tag"], row["seed"]): row for row in comparison["rows"]}
    assert list(rows) == [("direct", 1), ("branches", 1), ("distilled", 1), ("direct", 2)]
    for (tag, seed), row in rows.items():
        record = records / tag / f"seed_{seed}"
        assert sorted(os.listdir(record)) == ["config.yaml", "eval_deployed_test.json", "metrics.json", "run.json",
                                              "training_process.json"]
        evaluated = json.loads((record / "eval_deployed_test.json").read_text())
        last_epoch = json.loads((record / "metrics.json").read_text())["epochs"][-1]
        assert evaluated["num_samples"] == 24 and row["top1"] == 100 * evaluated["top1"]
        assert abs(row["top1"] - 100 * last_epoch["val_top1"]) <= 0.05  # the MINDIR answers as the trained weights
        assert yaml.safe_load((record / "config.yaml").read_text())["seed"] == seed
        assert os.path.isfile(out / tag / f"seed_{seed}" / "deployed.mindir")
    # V3's deployed form is V2's inference form: same parameters, same MACs; trained, V3 carries its branches
    assert rows[("branches", 1)]["deployed_params_m"] == rows[("direct", 1)]["deployed_params_m"]
    assert rows[("branches", 1)]["deployed_macs_m"] == rows[("direct", 1)]["deployed_macs_m"]
    assert rows[("branches", 1)]["params_m"] > rows[("direct", 1)]["params_m"] > rows[("direct", 1)][
        "deployed_params_m"]

    teacher = json.loads((records / "teacher_ghostnet_050" / "run.json").read_text())
    assert teacher["epochs"] == 2 and teacher["weights_kind"] == "ema"
    distilled_config = yaml.safe_load((records / "distilled" / "seed_1" / "config.yaml").read_text())
    assert distilled_config["teacher_model"] == "ghostnet_050" and distilled_config["kd_temperature"] == 2.0
    assert distilled_config["teacher_ckpt"] == str(records / "teacher_ghostnet_050" / "teacher_weights.ckpt")
    assert rows[("distilled", 1)]["teacher_weights_sha256"] == teacher["weights_sha256"]

    direct = [rows[("direct", 1)]["top1"], rows[("direct", 2)]["top1"]]
    summary = comparison["summaries"]["direct"]
    assert summary["n"] == 2 and summary["mean"] == pytest.approx(sum(direct) / 2)
    assert summary["std"] == pytest.approx(abs(direct[0] - direct[1]) / math.sqrt(2))
    assert summary["latency_ms"] > 0 and summary["onnxruntime_ms"] > 0
    assert comparison["claims"][0]["verdict"] == "untested: needs 2 seeds of each"
    assert comparison["claims"][0]["difference"] == pytest.approx(rows[("branches", 1)]["top1"] - summary["mean"])
    table = (records / "comparison.md").read_text()
    assert f"| direct | ghostnetv2_100 | 2 | {summary['mean']:.2f} ± {summary['std']:.2f} | " in table

    # A later session on a fresh clone: the records, not the checkpoints, are the comparison's memory.
    shutil.rmtree(out)
    assert compare_main([*flags, "--reuse", "--latency_rounds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "train.py" not in printed and "validate.py" not in printed
    again = json.loads((records / "comparison.json").read_text())
    assert again["rows"] == comparison["rows"]

    # a changed recipe does not mix old runs into the table
    with pytest.raises(CompareError, match=r"direct/seed_1 was trained with another recipe: lr \(recorded 0.003, "
                                           r"the plan 0.5\)"):
        compare_main([*flags, "--reuse", "--lr", "0.5"])
    # a distilled run that learnt from another teacher than the recorded one is refused
    run_json = records / "distilled" / "seed_1" / "run.json"
    run_json.write_text(json.dumps(dict(rows[("distilled", 1)], teacher_weights_sha256="0" * 64)))
    with pytest.raises(CompareError, match="distilled seed 1 learnt from another teacher"):
        compare_main([*flags, "--report", "--latency_rounds", "0"])


def test_claim_verdicts_from_means_and_welch_standard_errors():
    claim = Claim("a beats b", "a", "b")

    def summary(mean, std, n):
        return {"mean": mean, "std": std, "n": n}

    # means 91.0 and 89.5, stds 1.0 and 0.5 over 3 seeds: se = sqrt(1/3 + 0.25/3) = 0.6455; 1.5 > 2 x 0.6455
    held = judge_claim(claim, {"a": summary(91.0, 1.0, 3), "b": summary(89.5, 0.5, 3)})
    assert held["difference"] == pytest.approx(1.5) and held["se"] == pytest.approx(0.645497, abs=1e-6)
    assert held["verdict"] == "holds"
    # 1.0 < 2 x 0.6455: not shown; -1.5: reversed
    assert judge_claim(claim, {"a": summary(90.5, 1.0, 3), "b": summary(89.5, 0.5, 3)})["verdict"].startswith(
        "not shown")
    assert judge_claim(claim, {"a": summary(89.5, 0.5, 3), "b": summary(91.0, 1.0, 3)})["verdict"] == "reversed"
    assert judge_claim(claim, {"a": summary(91.0, None, 1), "b": summary(89.5, 0.5, 3)})["se"] is None
    assert judge_claim(claim, {"b": summary(89.5, 0.5, 3)})["verdict"] == "not run yet"


@pytest.mark.parametrize("change, message", [
    (lambda p: p["entries"][2].update(distill=True) or p.pop("teacher"), "distill is set but the plan has no teacher"),
    (lambda p: p["claims"][0].update(better="nobody"), "claim 1 names 'nobody', which is not an entry tag"),
    (lambda p: p["entries"][0].update(overrides={"seed": 3}), "seed cannot be an override"),
    (lambda p: p["entries"][1].update(tag="direct"), "entry tags must be unique"),
    (lambda p: p["entries"][0].update(seeds=[1, 1]), "a seed is repeated"),
    (lambda p: p.update(schedule="x"), "unknown key\\(s\\) schedule"),
])
def test_a_bad_plan_is_refused_before_anything_trains(tmp_path, change, message):
    plan = json.loads(json.dumps(PLAN))
    change(plan)
    with pytest.raises(CompareError, match=message):
        load_plan(_write_plan(tmp_path / "plan.yaml", plan))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "plans", "*.yaml"))),
                         ids=os.path.basename)
def test_every_shipped_plan_loads_with_each_runs_config(path):
    plan = load_plan(path)
    for entry in plan.entries:
        overrides = dict(entry.overrides, model=entry.model, seed=entry.seeds[0] or 0)
        assert load_config(plan.config, overrides).model == entry.model


def test_the_generations_plan_has_three_seeds_of_each_arm_its_claims_compare():
    plan = load_plan(os.path.join(REPO, "configs", "plans", "ghostnet_generations_fashion_mnist.yaml"))
    assert plan.records == os.path.join(REPO, "docs", "results", "ghostnet_generations_fashion_mnist")
    seeds = {entry.tag: entry.seeds for entry in plan.entries}
    for claim in plan.claims:
        assert len(seeds[claim.better]) >= 3 and len(seeds[claim.than]) >= 3
