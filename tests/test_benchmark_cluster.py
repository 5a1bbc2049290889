"""The byte model of scripts/benchmark_cluster.py: what a ring all-reduce moves, GhostNet's gradient bytes counted
from its parameters, and the projection built from them (the measurements need root and run as the script)."""
from scripts.benchmark_cluster import print_projection, ring_bytes
from src.models import create_model
from src.utils.profile import count_params


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
