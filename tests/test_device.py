"""Device selection: `auto` is the best device this MindSpore build and machine can use (CPU here), an explicit
device that is not usable is a one-line error before any data is read, and validate.py / export.py run the shipped
ImageNet recipe (written for 8 Ascend devices) on whatever machine starts them. On a host with several
accelerators each process takes its local rank's device and a share of the CPUs, checked here on the environments
mpirun and msrun give their processes (MindSpore 2.10's msrun: parallel/cluster/process_entity/_api.py)."""
import os
import subprocess
import sys

import pytest

import export
import train
import validate
from scripts.predict import main as predict_main
from src.checkpoint import save_checkpoint
from src.config import Config, ConfigError, load_config
from src.device import (PREFERENCE, choose_device_id, local_ranks, placement, resolve_device, setup_context,
                        usable_devices, workers_per_rank)
from src.models import create_model
from tests.data_fixtures import make_image_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_imagenet.yaml")
SMALL = ["--model", "ghostnet_050", "--num_classes", "2", "--image_size", "32", "--small_input", "true"]
UNUSABLE = [name for name in PREFERENCE if name not in usable_devices()]


def test_auto_is_the_preferred_usable_device():
    assert "CPU" in usable_devices() and resolve_device("auto") == usable_devices()[0]
    cfg = Config(device_target="auto")
    assert setup_context(cfg) == cfg.device_target == usable_devices()[0]  # written back: config.yaml shows it


@pytest.mark.skipif(usable_devices() != ("CPU",), reason="an accelerator is usable here")
def test_auto_is_cpu_on_a_machine_without_accelerators():
    assert resolve_device("auto") == "CPU"


@pytest.mark.skipif(not UNUSABLE, reason="every device is usable here")
def test_unusable_device_is_a_config_error_naming_the_usable_ones():
    with pytest.raises(ConfigError, match=f"config key 'device_target': {UNUSABLE[0]} is not available here .*; "
                                          f"available: {', '.join(usable_devices())}$"):
        resolve_device(UNUSABLE[0])


@pytest.mark.skipif(not UNUSABLE, reason="every device is usable here")
@pytest.mark.parametrize("script", ["validate.py", "export.py"])
def test_unusable_device_is_one_line_on_stderr(tmp_path, script):
    """No MindSpore C++ trace or plugin warnings: the scripts' normal error exit."""
    result = subprocess.run([sys.executable, script, "--config", IMAGENET, "--device_target", UNUSABLE[0],
                             "--ckpt_path", str(tmp_path / "absent.ckpt")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode in (1, 2), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"error: config key 'device_target': {UNUSABLE[0]} is not available here" in lines[0]
    assert "available: CPU" in lines[0]


@pytest.mark.skipif(not UNUSABLE, reason="every device is usable here")
def test_unusable_device_fails_before_any_data_is_read(tmp_path):
    """train.py and predict.py (which reads the dataset's class names) stop before the missing data is noticed."""
    absent = ["--data_dir", str(tmp_path / "absent"), "--device_target", UNUSABLE[0]]
    with pytest.raises(ConfigError, match="'device_target'"):
        train.main(["--config", IMAGENET, *absent, "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="'device_target'"):
        predict_main(["--config", IMAGENET, *absent, "--ckpt_path", str(tmp_path / "absent.ckpt"),
                      "--images", str(tmp_path / "absent.png")])


# What each launcher puts in a process's environment: rank 11 of 16, the 4th process (local rank 3) of 8 on its host.
MPIRUN = {"OMPI_COMM_WORLD_RANK": "11", "OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_RANK": "3",
          "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
MSRUN = {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "8", "MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": "8118",
         "MS_NODE_ID": "3", "RANK_ID": "3", "RANK_SIZE": "8", "DEVICE_ID": "3"}  # msrun --worker_num=8, worker 3
MPIRUN_ON_CPU = {**MPIRUN, "MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "16"}  # after src/distributed's CPU bootstrap


@pytest.mark.parametrize("device", ["GPU", "Ascend"])
@pytest.mark.parametrize("environ, expected", [(MPIRUN, 3), (MPIRUN_ON_CPU, 3), (MSRUN, 3), ({}, 0),
                                               ({**MSRUN, "DEVICE_ID": "6"}, 6)],
                         ids=["mpirun", "mpirun+cluster", "msrun", "single", "msrun-worker-6"])
def test_each_launcher_gives_each_local_rank_its_device(device, environ, expected):
    assert choose_device_id(environ, Config(device_target=device), device_count=8) == expected


def test_msrun_without_a_device_id_leaves_it_to_mindspore():
    """A dynamic cluster started by hand (MS_ROLE set, no DEVICE_ID): MindSpore negotiates, as documented."""
    environ = {k: v for k, v in MSRUN.items() if k != "DEVICE_ID"}
    assert choose_device_id(environ, Config(device_target="GPU"), device_count=8) is None


@pytest.mark.parametrize("environ", [MPIRUN, MSRUN, {}], ids=["mpirun", "msrun", "single"])
def test_the_config_key_device_id_wins(environ):
    assert choose_device_id(environ, Config(device_target="Ascend", device_id=5), device_count=8) == 5


def test_a_device_id_the_host_does_not_have_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"^device id 3 \(mpirun's local rank\) is outside the 2 GPU device\(s\) "
                                          r"of this host \(ids 0\.\.1\): start at most 2 processes per host, or "
                                          r"set --device_id$"):
        choose_device_id(MPIRUN, Config(device_target="GPU"), device_count=2)
    with pytest.raises(ConfigError, match=r"^device id 8 \(config key 'device_id'\) is outside the 8 Ascend"):
        choose_device_id({}, Config(device_target="Ascend", device_id=8), device_count=8)
    with pytest.raises(ConfigError, match="'device_id' must be at least 0"):
        load_config(None, {"device_id": -1})


@pytest.mark.parametrize("environ", [MPIRUN, MSRUN, {}], ids=["mpirun", "msrun", "single"])
def test_on_cpu_the_device_id_is_not_used(environ):
    assert choose_device_id(environ, Config(device_target="CPU", device_id=7), device_count=1) is None


@pytest.mark.parametrize("environ, expected", [(MPIRUN, (3, 8)), (MPIRUN_ON_CPU, (3, 8)), (MSRUN, (3, 8)),
                                               ({}, (0, 1))], ids=["mpirun", "mpirun+cluster", "msrun", "single"])
def test_local_rank_and_processes_on_the_host(environ, expected):
    assert local_ranks(environ) == expected


def test_data_workers_share_the_host_cpus_among_its_ranks(monkeypatch):
    assert workers_per_rank(8, local_size=8, cpu_count=96) == 8  # the config's num_workers fits
    assert workers_per_rank(8, local_size=8, cpu_count=32) == 4  # 32 CPUs / 8 ranks
    assert workers_per_rank(2, local_size=8, cpu_count=4) == 1  # never fewer than one
    assert workers_per_rank(2, local_size=1, cpu_count=2) == 2  # one process: as before, up to the CPU count
    monkeypatch.setattr(os, "cpu_count", lambda: 32)  # a 32-CPU host, whatever this one has
    here = placement(Config(device_target="CPU", num_workers=8), MPIRUN)
    assert here.workers == 4  # 32 CPUs / 8 local ranks
    assert here.line(11, 16) == ("rank 11 of 16 (local 3 of 8 on this host): CPU (no device id on CPU), "
                                 "4 data worker(s) per stage (32 CPUs / 8 local rank(s))")


def test_setup_context_on_cpu_ignores_device_id_and_caps_the_workers():
    cfg = Config(device_target="CPU", device_id=3, num_workers=1000)
    assert setup_context(cfg) == "CPU" and cfg.num_workers == os.cpu_count()


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A 2-class image folder (val split only) and a ghostnet_050 checkpoint for it, written by the repo's code."""
    root = tmp_path_factory.mktemp("device")
    data_dir = make_image_folder(str(root / "data"), per_class={"val": 2}, classes=2)
    net = create_model("ghostnet_050", num_classes=2, in_channels=3, small_input=True)
    ckpt = str(root / "ghostnet_050.ckpt")
    save_checkpoint(ckpt, {p.name: p for p in net.get_parameters()}, {"model": "ghostnet_050"})
    return root, data_dir, ckpt


def test_validate_runs_the_ascend_recipe_here(imagenet_like, capsys, recwarn):
    root, data_dir, ckpt = imagenet_like
    report = validate.main(["--config", IMAGENET, *SMALL, "--data_dir", data_dir, "--ckpt_path", ckpt,
                            "--output_dir", str(root / "eval"), "--eval_batch_size", "4", "--num_workers", "1",
                            "--mode", "pynative"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"ghostnet_050 on imagenet (val, 4 images) | {usable_devices()[0]}, pynative mode"
    assert report["num_samples"] == 4
    assert not [w for w in recwarn if "amp_level" in str(w.message)]  # O3 of the recipe: a training-only warning


def test_export_runs_the_ascend_recipe_here(imagenet_like, capsys):
    root, _, ckpt = imagenet_like
    assert export.main(["--config", IMAGENET, *SMALL, "--ckpt_path", ckpt, "--output", str(root / "g.mindir")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"ghostnet_050 (trained weights of {ckpt}) on {usable_devices()[0]}: ")
    if "Ascend" not in usable_devices():
        with pytest.raises(export.ExportError, match="AIR export needs an Ascend device, this run has CPU"):
            export.main(["--config", IMAGENET, *SMALL, "--ckpt_path", ckpt, "--file_format", "AIR"])
