"""scripts/benchmarks/harness.py, the one way the benchmarks measure, and the reference rule of
scripts/benchmarks/cpu_speed.py: every figure is quoted against PyTorch's best setting on its workload."""
import statistics
import sys
import time

from scripts.benchmarks import harness
from scripts.benchmarks.cpu_speed import against_pytorch, against_pytorch_table, pytorch_best, table


def test_a_measurement_process_answers_with_its_last_json_line_or_its_last_error_line():
    printed = "import json; print('log line'); print(json.dumps({'n': 1})); print(json.dumps({'n': 2}))"
    assert harness.measure_in_process([sys.executable, "-c", printed]) == {"n": 2}
    failed = "import sys; print('{\"n\": 3}'); sys.stderr.write('first\\nValueError: bad spec\\n'); sys.exit(1)"
    assert harness.measure_in_process([sys.executable, "-c", failed]) == {"error": "ValueError: bad spec"}
    assert harness.measure_in_process([sys.executable, "-c", "print('no json')"]) == {"error": "no output"}


_SERVER = """
import sys, time
from scripts.benchmarks import harness
print("compiling...", flush=True)
harness.serve(lambda: time.sleep(float(sys.argv[1])), warmup=1)
"""


def test_lockstep_calls_serving_processes_in_turn_and_gives_the_ratio_of_their_times():
    """Two serving processes (one call: a 20 ms sleep, the other 10 ms) are called in turn; other output they print
    is skipped; the before / after ratio of their times is ~2 (a sleep takes almost no CPU time)."""
    slow, fast = harness.lockstep([[sys.executable, "-c", _SERVER, "0.02"], [sys.executable, "-c", _SERVER, "0.01"]],
                                  pairs=6)
    slow, fast = ([call["seconds"] for call in calls] for calls in (slow, fast))
    assert len(slow) == len(fast) == 6 and min(slow) >= 0.02 and min(fast) >= 0.01
    summary = harness.ratio_summary(slow, fast)
    assert summary["pairs"] == 6 and 1.5 < summary["median"] < 2.5
    assert summary["q1"] <= summary["median"] <= summary["q3"]
    # untimed calls before each timed one: the lockstep takes longer, the timed calls do not
    start = time.perf_counter()
    slow, fast = harness.lockstep([[sys.executable, "-c", _SERVER, "0.02"], [sys.executable, "-c", _SERVER, "0.01"]],
                                  pairs=2, warm_calls=5)
    assert time.perf_counter() - start >= 2 * 6 * 0.03
    assert max(call["seconds"] for call in fast) < 0.05  # one call, not the 6 calls' 0.06


def test_rounds_go_round_robin_and_the_median_round_is_kept():
    calls = []
    values = iter([30.0, 10.0, 20.0, 50.0, 40.0, 60.0, 5.0, 70.0, 80.0])
    results = harness.round_robin(["a", "b", "c"], 3, lambda job: calls.append(job) or {"v": next(values)})
    assert calls == ["a", "b", "c"] * 3
    assert [r["v"] for r in results["a"]] == [30.0, 50.0, 5.0]
    assert harness.median_round(results["a"], lambda r: r["v"]) == {"v": 30.0, "rounds": [5.0, 30.0, 50.0]}
    # failed rounds are left out; an even count keeps the lower middle round; one round has no "rounds"
    mixed = [{"v": 4.0}, {"error": "x"}, {"v": 2.0}, {"v": 8.0}, {"v": 6.0}]
    assert harness.median_round(mixed, lambda r: r["v"]) == {"v": 4.0, "rounds": [2.0, 4.0, 6.0, 8.0]}
    assert harness.median_round([{"v": 1.0}], lambda r: r["v"]) == {"v": 1.0}
    assert harness.median_round([{"error": "a"}, {"error": "b"}], lambda r: r["v"]) == {"error": "b"}


def test_ratios_are_speeds_against_the_fastest_pytorch_setting_of_each_workload():
    rows = [
        ("MindSpore graph", "train_32", {"images_per_s": 600.0, "peak_rss_mib": 1.0}),
        ("PyTorch eager", "train_32", {"images_per_s": 300.0, "peak_rss_mib": 1.0}),
        ("PyTorch channels_last", "train_32", {"images_per_s": 800.0, "peak_rss_mib": 1.0}),
        ("PyTorch torch.compile", "train_32", {"error": "inductor failed"}),
        ("MindSpore graph", "infer_224", {"latency_ms": 15.0, "compile_s": 4.0, "peak_rss_mib": 1.0}),
        ("PyTorch eager", "infer_224", {"latency_ms": 20.0, "peak_rss_mib": 1.0}),
        ("PyTorch torch.compile", "infer_224", {"latency_ms": 12.0, "compile_s": 60.0, "peak_rss_mib": 1.0}),
    ]
    best = pytorch_best(rows)
    assert {workload: label for workload, (label, _) in best.items()} == {
        "train_32": "PyTorch channels_last", "infer_224": "PyTorch torch.compile"}
    lines = table(rows, "ghostnet_100").splitlines()
    assert "| train_32 | MindSpore graph | 600.0 img/s | 0.75x |  | 1 |" in lines
    assert "| train_32 | PyTorch eager | 300.0 img/s | 0.38x |  | 1 |" in lines
    assert "| train_32 | PyTorch channels_last | 800.0 img/s | the best PyTorch |  | 1 |" in lines
    assert "| train_32 | PyTorch torch.compile | failed: inductor failed | | | |" in lines
    assert "| infer_224 | MindSpore graph | 15.0 ms | 0.80x | 4.0 | 1 |" in lines  # 12 ms / 15 ms
    assert "| infer_224 | PyTorch torch.compile | 12.0 ms | the best PyTorch | 60.0 | 1 |" in lines


def test_lockstep_against_pytorch_reads_each_round_against_its_fastest_setting():
    """Speeds are PyTorch's time over this repo's in the same round; "best" takes the fastest setting of each round
    (here eager in rounds 1-2, compile in rounds 3-4), so it is at most every single setting's ratio."""
    ours = [0.010, 0.012, 0.020, 0.010]
    theirs = {"PyTorch eager": [0.011, 0.012, 0.040, 0.030], "PyTorch torch.compile": [0.015, 0.018, 0.022, 0.012]}
    f = against_pytorch(ours, theirs)
    assert abs(f["ours_ms"] - 11.0) < 1e-9
    assert f["settings"]["PyTorch eager"]["pairs"] == 4 and abs(f["settings"]["PyTorch eager"]["ms"] - 21.0) < 1e-9
    best = [0.011 / 0.010, 0.012 / 0.012, 0.022 / 0.020, 0.012 / 0.010]
    assert abs(f["best"]["median"] - statistics.median(best)) < 1e-9
    assert all(f["best"]["median"] <= s["median"] for s in f["settings"].values())
    lines = against_pytorch_table({"infer_224": f}, 4).splitlines()
    assert lines[2] == "| infer_224 | MindSpore graph, BN folded | 11.0 |  |"
    assert lines[-1].startswith("| infer_224 | PyTorch's best setting of each round |  | **1.10x** (")


def test_the_profile_reads_the_profilers_operator_table_per_call(tmp_path):
    from scripts.benchmarks.profile_step import read_op_types
    folder = tmp_path / "vm_1_ascend_ms" / "FRAMEWORK"
    folder.mkdir(parents=True)
    (folder / "cpu_op_type_info_0.csv").write_text(
        "op_type,type_occurrences,execution_frequency(per-step),total_compute_time,avg_time(ms),percent\n"
        "Custom,470,94,27.95,0.0595,0.81\nConcat,160,32,1.2,0.0075,0.035\n")
    assert read_op_types(str(tmp_path), steps=5) == {"Custom": {"launches": 94.0, "ms": 5.59},
                                                     "Concat": {"launches": 32.0, "ms": 0.24}}


def test_the_profile_splits_the_custom_kernels_by_the_cell_that_launched_them(tmp_path):
    from scripts.benchmarks.profile_step import read_custom_kernels
    folder = tmp_path / "vm_1_ascend_ms" / "FRAMEWORK"
    folder.mkdir(parents=True)
    header = "op_side,op_type,op_name,full_op_name,op_occurrences,op_total_time(ms),op_avg_time(ms)," \
             "total_proportion,subgraph,pid\n"
    block = "Default/network-GhostNet/blocks-SequentialCell/0-GhostBottleneck"
    rows = [("Custom", f"Gradients/{block}/bn1-BatchNorm2d/Grad_Custom/Custom-op10", 2, 3.0),
            ("Custom", f"Gradients/{block}/bn2-BatchNorm2d/Grad_Custom/Custom-op11", 2, 1.0),
            ("Custom", f"{block}/bn1-BatchNorm2d/Custom-op3", 2, 1.5),
            ("Custom", f"{block}/conv_dw-DepthwiseConv2d/Custom-op4", 2, 0.5),
            ("Custom", "Default/Custom-op0", 2, 0.2),  # launched by the training step itself
            ("MatMul", f"Gradients/{block}/conv-PointwiseConv2d/Grad_MatMul/MatMul-op2", 2, 9.0)]
    (folder / "cpu_op_detail_info_0.csv").write_text(header + "".join(
        f"Host,{kind},x,{name},{count},{ms},0,0,Default,1\n" for kind, name, count, ms in rows))
    assert read_custom_kernels(str(tmp_path), steps=2) == {
        "BatchNorm2d backward": {"launches": 2.0, "ms": 2.0}, "BatchNorm2d forward": {"launches": 1.0, "ms": 0.75},
        "DepthwiseConv2d forward": {"launches": 1.0, "ms": 0.25}, "Default forward": {"launches": 1.0, "ms": 0.1}}


def test_variants_add_mindspore_rows_with_one_of_its_own_options_changed():
    import json

    import pytest

    from scripts.benchmarks.cpu_speed import jobs_of, parse_args
    args = parse_args(["--workloads", "train_32", "infer_224", "--no-reference",
                       "--variants", "jit_level=O1", "onednn_isa=AVX512_CORE"])
    jobs = jobs_of(args, None, None)
    labels = {(workload, label) for label, workload, _, _ in jobs}
    assert ("train_32", "MindSpore graph [jit_level=O1]") in labels
    assert ("infer_224", "MindSpore graph, BN folded [onednn_isa=AVX512_CORE]") in labels
    assert ("infer_224", "MindSpore MINDIR (BN folded) [jit_level=O1]") in labels
    assert len(jobs) == 3 * (1 + 3)  # default and two variants; train_32 one row, infer_224 three
    for label, _, command, env in jobs:
        spec = json.loads(command[command.index("--worker") + 1])
        assert (spec.get("jit_level") == "O1") == label.endswith("[jit_level=O1]")
        assert ((env or {}).get("ONEDNN_MAX_CPU_ISA") == "AVX512_CORE") == label.endswith("[onednn_isa=AVX512_CORE]")
    for wrong in (["--variants", "jit_level"], ["--variants", "graph_kernel=1"]):
        with pytest.raises(SystemExit):
            parse_args(wrong)
