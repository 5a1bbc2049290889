"""The figures published in README.md and docs/results/ are the ones in the run records kept beside them: a table
edited by hand, or a record replaced without its table, fails here."""
import hashlib
import itertools
import json
import os
import re
import shutil

import pytest
import yaml

from scripts import results_page
from scripts.compare_models import plan_tables, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "docs", "results")
COMPARISON = os.path.join(RESULTS, "comparison_fashion_mnist")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _comparison_rows():
    with open(os.path.join(COMPARISON, "comparison.json"), encoding="utf-8") as f:
        return json.load(f)["rows"]


def test_comparison_table_on_its_page_is_the_one_its_record_renders():
    rendered = table(_comparison_rows())
    assert _read(os.path.join(COMPARISON, "comparison.md")).rstrip("\n") == rendered
    assert rendered in _read(os.path.join(RESULTS, "comparison_fashion_mnist.md"))


def test_readme_comparison_row_quotes_the_records():
    rows = {row["tag"]: row for row in _comparison_rows()}
    with open(os.path.join(COMPARISON, "redundancy", "redundancy_compare_test0.json"), encoding="utf-8") as f:
        redundancy = {m["ghost_ratio"]: m["redundancy_over_images"] for m in json.load(f)}
    row = next(line for line in _read(os.path.join(REPO, "README.md")).split("\n")
               if line.startswith("| GhostNet against its baselines"))
    vgg = [rows[f"ghost_vgg16_s{s}"] for s in (1, 2, 3, 4)]
    expected = (f"`ghostnet_100` {rows['ghostnet_100']['top1_last']:.2f}% with {rows['ghostnet_100']['params_m']:.2f}M "
                f"params, `mobilenetv3_large_100` {rows['mobilenetv3_large_100']['top1_last']:.2f}% with "
                f"{rows['mobilenetv3_large_100']['params_m']:.2f}M; Ghost-VGG-16 at s = 2 / 3 / 4: "
                + " / ".join(f"{r['params_m'] / vgg[0]['params_m']:.2f}" for r in vgg[1:]) + " of VGG-16's params, "
                + " / ".join(f"{r['top1_last']:.2f}" for r in vgg[1:]) + f"% against {vgg[0]['top1_last']:.2f}%; "
                f"feature-map redundancy {redundancy[1]['mean']:.3f} +- {redundancy[1]['std']:.3f} in VGG-16, "
                f"{redundancy[2]['mean']:.3f} +- {redundancy[2]['std']:.3f} at s = 2")
    assert row.split(" | ")[1] == expected


def test_comparison_rows_agree_with_each_entry_run_record():
    rows = _comparison_rows()
    assert len(rows) == 8
    for row in rows:
        run = os.path.join(COMPARISON, row["tag"])
        with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
            epochs = json.load(f)["epochs"]
        with open(os.path.join(run, "training_process.json"), encoding="utf-8") as f:
            process = json.load(f)
        assert row["epochs"] == len(epochs) == 2
        assert row["top1_last"] == pytest.approx(100 * epochs[-1]["val_top1"])
        assert row["train_time_s"] == pytest.approx(sum(e["train_time_s"] for e in epochs))
        assert (row["wall_s"], row["peak_rss_mib"]) == (process["wall_s"], process["peak_rss_mib"])


def test_published_redundancy_figures_are_the_recorded_ones():
    with open(os.path.join(COMPARISON, "redundancy", "redundancy_compare_test0.json"), encoding="utf-8") as f:
        models = json.load(f)
    assert [m["ghost_ratio"] for m in models] == [1, 2, 3, 4]
    page = _read(os.path.join(RESULTS, "comparison_fashion_mnist.md")).replace("**", "")  # bold or not
    for model in models:
        over_images = model["redundancy_over_images"]
        assert over_images["count"] == len(over_images["per_image"]) == 100
        figure = f"{over_images['mean']:.3f} +- {over_images['std']:.3f}"
        assert figure in page, figure
        assert f"{min(over_images['per_image']):.3f} - {max(over_images['per_image']):.3f}" in page


@pytest.mark.parametrize("name", ["ghostnet_100_fashion_mnist", "ghostnet_100_small_fashion_mnist_rerun"])
def test_results_page_is_remade_from_its_record(tmp_path, name):
    """The page's own folder is a run directory (config.yaml, metrics.json, eval.json); remade from it, on a copy,
    the page comes out byte for byte as published."""
    published = _read(os.path.join(RESULTS, f"{name}.md"))
    commands = re.search(r"Reproduce:\n\n```\n(.*?)\n```", published, re.S).group(1).split("\n")
    record = tmp_path / name
    shutil.copytree(os.path.join(RESULTS, name), record)
    argv = ["--run", str(record), "--eval", str(record / "eval.json"), "--page", str(tmp_path / f"{name}.md")]
    for command in commands:
        argv += ["--command", command]
    assert results_page.main(argv) == 0
    assert (tmp_path / f"{name}.md").read_text(encoding="utf-8") == published


CPU_FIGURES = {  # README's main-job figure per CPU, in its order -> the record of that host's run, if kept
    "AMD EPYC (Zen 5; the results page's run)": "ghostnet_100_fashion_mnist",
    "AMD EPYC (Zen 5, before 2c0eee3)": None,
    "AMD EPYC (Zen 5, before 73c1b8a)": None,
    "AMD EPYC (an earlier host)": None,
    "Intel Xeon (AVX-512)": "ghostnet_100_fashion_mnist_intel_xeon",
}


def test_readme_main_job_pipeline_and_cpu_figures_are_their_records():
    readme = _read(os.path.join(REPO, "README.md"))
    with open(os.path.join(RESULTS, "ghostnet_100_fashion_mnist", "eval.json"), encoding="utf-8") as f:
        top1 = json.load(f)["top1"]
    assert f"main job reaches {100 * top1:.2f}% test top-1" in readme
    per_cpu = re.findall(r"(\d+\.\d\d)% on a 2-vCPU ([^,(]+\([^)]*\))", " ".join(readme.split()))
    assert [cpu for _, cpu in per_cpu] == list(CPU_FIGURES), per_cpu
    sentences = " ".join(_read(os.path.join(RESULTS, "history.md")).replace("**", "").split()).split(". ")
    for figure, cpu in per_cpu:  # each figure with its CPU: a record of that host, else a sentence of history.md
        record = CPU_FIGURES[cpu]
        if record:
            with open(os.path.join(RESULTS, record, "eval.json"), encoding="utf-8") as f:
                assert figure == f"{100 * json.load(f)['top1']:.2f}", (figure, cpu, record)
        else:
            assert [s for s in sentences if f"{figure}%" in s and f"2-vCPU {cpu[:-1]}" in s], (figure, cpu)

    with open(os.path.join(RESULTS, "data_pipeline", "benchmark_data.json"), encoding="utf-8") as f:
        loaders = json.load(f)["loaders"]
    ours, mindcv, timm = (loaders[name]["median"] for name in ("ours", "MindCV 0.3.0", "timm"))
    figure = f"{ours:.0f} img/s: {ours / mindcv:.2f}x MindCV 0.3.0, {ours / timm:.2f}x timm"
    assert figure in readme and ours >= mindcv and ours >= timm
    assert f"| ours | {ours:.0f} |" in _read(os.path.join(RESULTS, "data_pipeline.md"))


README_CPU_RUN = "bottleneck_rounds3_amd_epyc"  # the run README's CPU table quotes
README_LOCKSTEP_RUN = "against_pytorch_lockstep_amd_epyc"  # ... and its lockstep column
CPU_RECORD = os.path.join(RESULTS, "cpu_performance", f"{README_CPU_RUN}.json")
SERVING_PROFILE = os.path.join(RESULTS, "cpu_performance", "profile_bottleneck_amd_epyc.json")
PROFILE_RECORD = os.path.join(RESULTS, "cpu_performance", "profile_amd_epyc.json")
CPU_ROWS = {  # README's CPU table: row -> (workload, this repo's runtime in the record)
    "inference bs 1 @224 (inference form)": ("infer_224", "MindSpore graph, BN folded"),
    "training bs 32 @224": ("train_224", "MindSpore graph"),
    "training bs 128 @32, 1 channel": ("train_32", "MindSpore graph"),
}
TORCH_COLUMNS = ("PyTorch eager", "PyTorch channels_last", "PyTorch torch.compile",
                 "PyTorch torch.compile + channels_last")


def _table_rows(text, header):
    """{first cell: [the other cells]} of the Markdown table whose header line starts with `header`."""
    lines = text.split("\n")
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_readme_cpu_table_rows_are_their_record_against_pytorch_at_its_best():
    """Each row's figures are its workload's in the record, every PyTorch setting in its column, and the ratio is
    this repo's speed over the fastest of them, worked out here."""
    runs = {(r["workload"], r["runtime"]): r for r in _json(CPU_RECORD)}
    locked = {(r["workload"], r["runtime"]): r["lockstep_pytorch"]["best"]
              for r in _json(os.path.join(RESULTS, "cpu_performance", f"{README_LOCKSTEP_RUN}.json"))
              if "lockstep_pytorch" in r}
    readme = _read(os.path.join(REPO, "README.md"))
    rows = _table_rows(readme, "| workload | this repo | PyTorch 2.13 eager |")
    assert set(rows) == set(CPU_ROWS)
    for label, (workload, runtime) in CPU_ROWS.items():
        key, unit = ("latency_ms", "ms") if workload.startswith("infer") else ("images_per_s", "img/s")
        ours, torch = runs[workload, runtime][key], [runs[workload, column][key] for column in TORCH_COLUMNS]
        speed = (min(torch) / ours) if unit == "ms" else (ours / max(torch))
        best = locked[workload, runtime]
        onnx = (f"{runs[workload, 'ONNX Runtime, this repo' + chr(39) + 's ONNX'][key]:.1f} ms / "
                f"{runs[workload, 'ONNX Runtime, timm' + chr(39) + 's ONNX'][key]:.1f} ms") if unit == "ms" else ""
        assert rows[label] == [f"{ours:.1f} {unit}", *(f"{value:.1f} {unit}" for value in torch), f"{speed:.2f}x",
                               f"{best['median']:.2f}x ({best['q1']:.2f}-{best['q3']:.2f})", onnx], label
    # the serving advice quotes the same run and the profile
    infer = {runtime: run["latency_ms"] for (workload, runtime), run in runs.items() if workload == "infer_224"}
    profile = _json(SERVING_PROFILE)["profiles"]["infer_224"]
    serving = readme[readme.index("**Serving on a CPU**"):]
    assert (f"{infer['ONNX Runtime, this repo' + chr(39) + 's ONNX']:.1f} ms at batch 1 against "
            f"{infer['MindSpore graph, BN folded']:.1f} ms" in serving.replace("\n", " "))
    assert f"{infer['MindSpore MINDIR (BN folded)']:.1f} ms for the exported MINDIR" in serving.replace("\n", " ")
    assert (f"{profile['outside_kernels_ms'] / profile['step_ms']:.0%} of MindSpore's batch-1 time is spent between "
            f"its {profile['launches']:.0f} kernel launches" in serving.replace("\n", " "))


@pytest.mark.parametrize("record", ["pytorch_settings_amd_epyc", "bn_vector_sums_rounds3_amd_epyc",
                                    "stem_kernel_avx512_rounds3_amd_epyc", "stem_kernel_rounds1_amd_epyc",
                                    "before_after_7ce8c4b_amd_epyc", "fused_rounds3_amd_epyc", README_CPU_RUN])
def test_cpu_page_table_is_the_run_as_printed_and_its_record(record):
    printed = _read(os.path.join(RESULTS, "cpu_performance", f"{record}.txt"))
    table_lines = [line for line in printed.split("\n") if line.startswith("|")]
    assert "\n".join(table_lines) in _read(os.path.join(RESULTS, "cpu_performance.md"))
    runs = {(r["workload"], r["runtime"]): r for r in _json(os.path.join(RESULTS, "cpu_performance", f"{record}.json"))}
    for line in table_lines[2:]:
        workload, runtime, figure = [cell.strip() for cell in line.strip("|").split("|")][:3]
        run = runs[workload, runtime]
        assert figure == (f"{run['latency_ms']:.1f} ms" if "latency_ms" in run else f"{run['images_per_s']:.1f} img/s")


@pytest.mark.parametrize("record,before_commit,header", [
    ("fewer_launches_rounds3_amd_epyc", "6695ae4", "| workload | after: img/s, median of 3"),
    ("bn_vector_sums_rounds3_amd_epyc", "404b656", "| workload | with vector sums: img/s, median of 3")])
def test_cpu_page_before_and_after_rows_are_their_record(record, before_commit, header):
    runs = {(r["workload"], r["runtime"]): r for r in
            _json(os.path.join(RESULTS, "cpu_performance", f"{record}.json"))}
    rows = _table_rows(_read(os.path.join(RESULTS, "cpu_performance.md")), header)
    for workload in ("train_32", "train_224"):
        after, before = runs[workload, "MindSpore graph"], runs[workload, f"MindSpore graph [before: {before_commit}]"]

        def cell(run):
            rounds = ", ".join(f"{value:.0f}" if workload == "train_32" else f"{value:.1f}" for value in run["rounds"])
            return f"{run['images_per_s']:.1f} ({rounds})"
        speedup = f"{after['images_per_s'] / before['images_per_s']:.2f}"
        assert rows[workload][:5] == [cell(after), cell(before), speedup,
                                      f"{after['compile_s']:.1f} / {before['compile_s']:.1f}",
                                      f"{after['peak_rss_mib']:.0f} / {before['peak_rss_mib']:.0f}"], workload


@pytest.mark.parametrize("record", [
    "stem_kernel_avx512_lockstep_amd_epyc", "channel_scale_lockstep_amd_epyc", "ghost_concat_lockstep_amd_epyc",
    "ghost_concat_lockstep_train_32_again_amd_epyc", "ghost_concat_one_call_lockstep_amd_epyc",
    "ghost_module_inference_lockstep_amd_epyc", "squeeze_excite_inference_lockstep_amd_epyc",
    "ghost_bottleneck_inference_lockstep_amd_epyc", "serving_function_lockstep_amd_epyc",
    "head_kernels_lockstep_amd_epyc", "training_unchanged_lockstep_amd_epyc"])
def test_cpu_page_lockstep_rows_are_their_record(record):
    """Each lockstep table on the page (the first table after the command that wrote its record): every row's
    times and ratios (wall and CPU) are the record's, and every lockstep run of the record has its row."""
    runs = {(r["workload"], r["runtime"]): r["lockstep"] for r in
            _json(os.path.join(RESULTS, "cpu_performance", f"{record}.json")) if "lockstep" in r}
    page = _read(os.path.join(RESULTS, "cpu_performance.md"))
    after_command = page[page.index(f"--json docs/results/cpu_performance/{record}.json"):].split("\n")
    start = next(index for index, line in enumerate(after_command) if line.startswith("| workload | runtime |"))
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), after_command[start + 2:]))
    assert len(lines) == len(runs)
    for line in lines:
        workload, runtime, times, ratio, cpu_times, cpu_ratio, pairs = [c.strip() for c in line.strip("|").split("|")]
        f = runs[workload, runtime]
        c = f["cpu"]
        assert [times, ratio, cpu_times, cpu_ratio, pairs] == [
            f"{f['after_ms']:.1f} / {f['before_ms']:.1f}", f"{f['median']:.3f} ({f['q1']:.3f}-{f['q3']:.3f})",
            f"{c['after_ms']:.1f} / {c['before_ms']:.1f}", f"{c['median']:.3f} ({c['q1']:.3f}-{c['q3']:.3f})",
            str(f["pairs"])], line


@pytest.mark.parametrize("record,header", [
    (PROFILE_RECORD, "| call | ms per call (no profiler) |"),
    (os.path.join(RESULTS, "cpu_performance", "profile_fused_amd_epyc.json"), "| call, on aa05a45 | ms per call"),
    (SERVING_PROFILE, "| call, on 4f4261f | ms per call (no profiler) |")])
def test_cpu_page_profile_rows_are_the_profile_record(record, header):
    profiles = _json(record)["profiles"]
    page = _read(os.path.join(RESULTS, "cpu_performance.md"))
    rows = _table_rows(page, header)
    for label, workload in (("training step, bs 128 @32", "train_32"), ("training step, bs 32 @224", "train_224"),
                            ("inference bs 1 @224, inference form", "infer_224")):
        p = profiles[workload]
        assert rows[label][:4] == [f"{p['step_ms']:.1f}", f"{p['kernels_ms']:.1f} ms", f"{p['launches']:.0f}",
                                   f"{p['outside_kernels_ms']:.1f} ms ({p['outside_kernels_ms'] / p['step_ms']:.0%}), "
                                   f"{1e3 * p['outside_kernels_ms'] / p['launches']:.0f} us per launch"], label


def test_cpu_page_lockstep_against_pytorch_rows_are_their_record():
    """The page's table of the lockstep against PyTorch, the first after the command that wrote its record: every
    workload's rows (this repo's time, each setting's time and ratio, the per-round best) are the record's."""
    figures = {r["workload"]: r["lockstep_pytorch"] for r in
               _json(os.path.join(RESULTS, "cpu_performance", f"{README_LOCKSTEP_RUN}.json")) if "lockstep_pytorch" in r}
    page = _read(os.path.join(RESULTS, "cpu_performance.md"))
    after_command = page[page.index(f"--json docs/results/cpu_performance/{README_LOCKSTEP_RUN}.json"):].split("\n")
    start = next(index for index, line in enumerate(after_command) if line.startswith("| workload | runtime |"))
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), after_command[start + 2:]))
    expected = []
    for workload, f in figures.items():
        expected.append([workload, f"{f['ours_ms']:.1f}", ""])
        expected += [[workload, f"{s['ms']:.1f}", f"{s['median']:.2f}x ({s['q1']:.2f}-{s['q3']:.2f})"]
                     for s in f["settings"].values()]
        b = f["best"]
        expected.append([workload, "", f"**{b['median']:.2f}x** ({b['q1']:.2f}-{b['q3']:.2f})"])
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [[c[0], c[2], c[3]] for c in cells] == expected
    assert set(figures) == {"infer_224", "train_224", "train_32"}


def test_cpu_page_kernel_split_rows_are_the_profile_record():
    profiles = _json(os.path.join(RESULTS, "cpu_performance", "profile_bn_vector_sums_amd_epyc.json"))["profiles"]
    rows = _table_rows(_read(os.path.join(RESULTS, "cpu_performance.md")), "| src/kernels, by cell (ms per call) |")
    assert rows and all(rows[cell] == [f"{profiles[w]['custom_kernels_by_cell'][cell]['ms']:.2f}"
                                       for w in ("train_32", "train_224")] for cell in rows), rows


GENERATIONS = os.path.join(RESULTS, "ghostnet_generations_fashion_mnist")


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_generations_rows_are_their_runs_records():
    """Each row of the GhostNet generations comparison is its run's record: the deployed MINDIR's evaluation, the
    run's own metrics and config; every run of 4 epochs, under the plan's recipe, the distilled ones from the
    recorded teacher (its weights file hashes as recorded)."""
    comparison = _json(os.path.join(GENERATIONS, "comparison.json"))
    assert comparison["rows"], "no run is recorded"
    teacher = comparison["teacher"]
    for row in comparison["rows"]:
        record = os.path.join(GENERATIONS, row["tag"], f"seed_{row['seed']}")
        assert _json(os.path.join(record, "run.json")) == row
        evaluated = _json(os.path.join(record, "eval_deployed_test.json"))
        assert evaluated["num_samples"] == 10000 and row["top1"] == 100 * evaluated["top1"]
        epochs = _json(os.path.join(record, "metrics.json"))["epochs"]
        assert len(epochs) == 4 and row["top1_training_form"] == pytest.approx(100 * epochs[-1]["val_top1"])
        assert abs(row["top1"] - row["top1_training_form"]) <= 0.05
        with open(os.path.join(record, "config.yaml"), encoding="utf-8") as f:
            config = yaml.safe_load(f)
        assert (config["model"], config["seed"], config["epochs"]) == (row["model"], row["seed"], 4)
        if "teacher_weights_sha256" in row:
            assert row["teacher_weights_sha256"] == teacher["weights_sha256"]
    if teacher is not None:
        weights = os.path.join(GENERATIONS, teacher["tag"], teacher["weights"])
        with open(weights, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == teacher["weights_sha256"]
        assert teacher["top1_last"] == pytest.approx(
            100 * _json(os.path.join(GENERATIONS, teacher["tag"], "metrics.json"))["epochs"][-1]["val_top1"])


def test_generations_summaries_claims_and_table_are_what_the_rows_give():
    """Means, standard deviations and each claim's difference and standard error worked out again from the rows
    (not with the code under test), and the table on the page and in comparison.md is the one they render."""
    comparison = _json(os.path.join(GENERATIONS, "comparison.json"))
    rows, summaries = comparison["rows"], comparison["summaries"]
    for tag, summary in summaries.items():
        tops = [row["top1"] for row in rows if row["tag"] == tag]
        mean = sum(tops) / len(tops)
        assert (summary["n"], summary["mean"]) == (len(tops), pytest.approx(mean))
        if len(tops) > 1:
            assert summary["std"] == pytest.approx((sum((t - mean) ** 2 for t in tops) / (len(tops) - 1)) ** 0.5)
    for claim in comparison["claims"]:
        better, than = summaries.get(claim["better"]), summaries.get(claim["than"])
        if better is None or than is None:
            assert claim["verdict"] == "not run yet"
            continue
        assert claim["difference"] == pytest.approx(better["mean"] - than["mean"])
        if better["n"] > 1 and than["n"] > 1:
            se = (better["std"] ** 2 / better["n"] + than["std"] ** 2 / than["n"]) ** 0.5
            assert claim["se"] == pytest.approx(se)
            assert claim["verdict"].startswith("holds" if claim["difference"] > 2 * se else
                                               "reversed" if claim["difference"] < -2 * se else "not shown")
    rendered = plan_tables(rows, summaries, comparison["claims"])
    assert _read(os.path.join(GENERATIONS, "comparison.md")).rstrip("\n") == rendered
    assert rendered in _read(os.path.join(RESULTS, "ghostnet_generations_fashion_mnist.md"))


def test_readme_generations_row_quotes_the_records():
    comparison = _json(os.path.join(GENERATIONS, "comparison.json"))
    row = next(line for line in _read(os.path.join(REPO, "README.md")).split("\n")
               if line.startswith("| GhostNet generations"))
    for tag, summary in comparison["summaries"].items():
        spread = "" if summary["std"] is None else f" ± {summary['std']:.2f}"
        assert f"`{tag}` {summary['mean']:.2f}{spread} (n={summary['n']})" in row, tag
    for claim in comparison["claims"]:
        assert claim["verdict"] in row, claim["text"]
        if claim["difference"] is not None and claim["se"] is not None:
            assert f"{claim['difference']:+.2f} ± {claim['se']:.2f}, {claim['verdict']}" in row, claim["text"]
    if comparison["teacher"] is not None:
        assert f"from a {comparison['teacher']['top1_last']:.2f}% teacher" in row
