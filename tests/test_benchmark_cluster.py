"""The byte model of scripts/benchmarks/multi_host_network.py: what a ring all-reduce moves, GhostNet's gradient bytes counted
from its parameters, and the projection built from them (the measurements need root and run as the script)."""
import json
import os
from collections import Counter

import mindspore

from scripts.benchmarks.multi_host_network import float32_gradient_bytes, print_projection, print_tables, ring_bytes
from src.models import create_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "docs", "results")


def test_a_ring_all_reduce_sends_twice_the_gradients_times_n_minus_one_over_n():
    assert ring_bytes(1000, 1) == 0
    assert ring_bytes(1000, 2) == 1000  # reduce-scatter half, all-gather half
    assert ring_bytes(1000, 8) == 1750


def test_ghostnet_100_gradients_are_its_trainable_parameters_in_float32():
    net = create_model("ghostnet_100", num_classes=1000, in_channels=3)
    trainable = net.trainable_params()
    assert {param.dtype for param in trainable} == {mindspore.float32}
    assert sum(param.asnumpy().nbytes for param in trainable) == 20_730_032  # 4 x README's 5,182,508 parameters
    assert float32_gradient_bytes(net) == 20_730_032


def test_the_projection_is_bandwidth_plus_hop_latency(capsys):
    """Rows worked by hand: 8 servers at 25 Gbit/s send 2 x 7/8 x 20,730,032 B = 290.2 Mbit, 11.61 ms, plus 14 hops
    of 10 us; 64 servers at 400 Gbit/s 2 x 63/64 of it, 0.82 ms, plus 126 hops (1.26 ms). float16: half the bytes."""
    print_projection(20_730_032, compute_ms=[5.0, 20.0], latency_us=10.0)
    lines = capsys.readouterr().out.splitlines()
    assert "| 8 | 25 Gbit/s | 11.7 | 5.9 | yes / yes | no / no |" in lines
    assert "| 64 | 400 Gbit/s | 2.1 | 1.7 | no / no | no / no |" in lines


def _records(*names):
    records = []
    for name in names:
        with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
            records += json.load(f)["records"]
    return records


def test_the_results_page_holds_the_tables_its_records_render(capsys):
    """docs/results/multi_host.md's tables are exactly the rows print_tables / print_projection make of its
    records: none missing, none the records do not give."""
    records = _records("multi_host.json", "multi_host_accuracy.json", "multi_host_quiet.json")
    print_tables(records)
    print_projection(next(r for r in records if r["classes"] == 1000)["gradient_bytes"], compute_ms=[5.0, 20.0])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    with open(os.path.join(RESULTS, "multi_host.md"), encoding="utf-8") as f:
        page_rows = [line for line in f.read().splitlines() if line.startswith("|")]
    assert len(rows) > 20 and Counter(page_rows) == Counter(rows)


def test_readme_network_row_is_the_quiet_record():
    """README's results row: the all-reduce's share of the step ((step - step without all-reduce) / step) at three
    link rates, and the ring bytes the as-trained all-reduce moves per second uncapped, from multi_host_quiet.json."""
    (record,) = _records("multi_host_quiet.json")
    rows = {row["rate"]: row for row in record["rows"]}
    share = {rate: f"{100 * (1 - rows[rate]['step without all-reduce'] / rows[rate]['step']):.0f}%"
             for rate in ("unlimited", "1gbit", "100mbit")}
    sent_bits = 8 * ring_bytes(record["gradient_bytes"], record["ranks"])
    speed = sent_bits / rows["unlimited"]["as trained (fusion id 1 each)"] / 1e9
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = " ".join(f.read().split())
    assert (f"main job's shape, quiet: gradient all-reduce {share['unlimited']} of the step uncapped, "
            f"{share['1gbit']} at 1 Gbit/s, {share['100mbit']} at 100 Mbit/s; MindSpore's CPU all-reduce moves "
            f"{speed:.2f} Gbit/s") in readme
