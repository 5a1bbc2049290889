"""Device selection: `auto` is the best device this MindSpore build and machine can use (CPU here), an explicit
device that is not usable is a one-line error before any data is read, and validate.py / export.py run the shipped
ImageNet recipe (written for 8 Ascend devices) on whatever machine starts them."""
import os
import subprocess
import sys

import pytest

import export
import train
import validate
from scripts.predict import main as predict_main
from src.checkpoint import save_checkpoint
from src.config import Config, ConfigError
from src.device import PREFERENCE, resolve_device, setup_context, usable_devices
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
