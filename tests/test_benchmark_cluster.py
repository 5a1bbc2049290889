"""The byte model of scripts/benchmark_cluster.py: what a ring all-reduce moves, GhostNet's gradient bytes counted
from its parameters, and the projection built from them (the measurements need root and run as the script)."""
import json
import os

from scripts.benchmark_cluster import print_projection, print_tables, ring_bytes
from src.models import create_model
from src.analysis.profile import count_params

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results")


def test_a_ring_all_reduce_sends_twice_the_gradients_times_n_minus_one_over_n():
    assert ring_bytes(1000, 1) == 0
    assert ring_bytes(1000, 2) == 1000  # reduce-scatter half, all-gather half
    assert ring_bytes(1000, 8) == 1750


def test_ghostnet_100_gradients_are_its_trainable_parameters_in_float32():
    net = create_model("ghostnet_100", num_classes=1000, in_channels=3)
    assert 4 * count_params(net) == 4 * 5_182_508  # README's parameter table


def test_the_projection_is_bandwidth_plus_hop_latency(capsys):
    gradient_bytes = 20_730_032
    print_projection(gradient_bytes, compute_ms=[5.0, 20.0], latency_us=10.0)
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("| 8 | 25 Gbit/s"))
    fp32 = 2 * 7 / 8 * gradient_bytes * 8 / 25e9 * 1e3 + 2 * 7 * 10e-3
    fp16 = 2 * 7 / 8 * gradient_bytes / 2 * 8 / 25e9 * 1e3 + 2 * 7 * 10e-3
    assert row == f"| 8 | 25 Gbit/s | {fp32:.1f} | {fp16:.1f} | yes / yes | no / no |"
    fast = next(line for line in lines if line.startswith("| 64 | 400 Gbit/s"))
    assert fast.endswith("| no / no | no / no |")


def test_the_results_page_holds_the_tables_its_records_render(capsys):
    """docs/results/multi_host.md shows every table row that print_tables / print_projection make of its records."""
    records = []
    for name in ("multi_host.json", "multi_host_accuracy.json", "multi_host_quiet.json"):
        with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
            records += json.load(f)["records"]
    print_tables(records)
    print_projection(next(r for r in records if r["classes"] == 1000)["gradient_bytes"], compute_ms=[5.0, 20.0])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    with open(os.path.join(RESULTS, "multi_host.md"), encoding="utf-8") as f:
        page = f.read()
    assert len(rows) > 20 and [row for row in rows if row not in page] == []
