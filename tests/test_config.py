"""Config: YAML + overrides, type checks, value checks naming the key, and the shipped recipe files."""
import glob
import os
import re

import pytest

from src.config import CHOICES, Config, ConfigError, load_config, parse_overrides, save_config, validate_config
from src.engine.lr_schedule import SCHEDULERS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _yaml(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_then_overrides_and_round_trip(tmp_path):
    path = _yaml(tmp_path, "model: ghostnet_050\nlr: 1e-3\nbetas: [0.8, 0.99]\nema: true\n")
    cfg = load_config(path, parse_overrides(["--lr", "0.02", "--epochs=3", "--betas", "0.9,0.95"]))
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.betas, cfg.ema) == ("ghostnet_050", 0.02, 3, [0.9, 0.95], True)
    save_config(cfg, str(tmp_path / "resolved.yaml"))
    assert load_config(str(tmp_path / "resolved.yaml")) == cfg


def test_unknown_key_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(
            "unknown config key 'optimiser' on the command line (did you mean 'optimizer'?)")):
        parse_overrides(["--optimiser", "adam"])
    with pytest.raises(ConfigError, match=r"unknown config key 'warmup_epoch' in .*run\.yaml "
                                          r"\(did you mean 'warmup_epochs'\?\)"):
        load_config(_yaml(tmp_path, "warmup_epoch: 2\n"))


@pytest.mark.parametrize("overrides, message", [
    (["--epochs", "two"], "config key 'epochs' expects int, got 'two'"),
    (["--ema", "maybe"], "config key 'ema' expects true or false"),
    (["--betas", "0.9"], "config key 'betas' expects a list of float"),
])
def test_bad_type_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, parse_overrides(overrides))


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "'batch_size' must be at least 1, got 0"),
    (dict(eval_batch_size=0), "'eval_batch_size' must be at least 1"),
    (dict(lr=-0.1), "'lr' must be greater than 0, got -0.1"),
    (dict(weight_decay=-1e-4), "'weight_decay' must be at least 0"),
    (dict(momentum=1.0), r"'momentum' must be in \[0, 1\)"),
    (dict(label_smoothing=1.5), "'label_smoothing' must be in"),
    (dict(betas=[0.9, 1.0]), "'betas' must be two values in"),
    (dict(decay_rate=0.0), r"'decay_rate' must be in \(0, 1\]"),
    (dict(optimizer="lamb"), "'optimizer' must be one of sgd, rmsprop, adam, adamw, got 'lamb'"),
    (dict(scheduler="cosin"), "'scheduler' must be one of .* got 'cosin' \\(did you mean 'cosine'\\?\\)"),
    (dict(mode="eager"), "'mode' must be one of graph, pynative"),
    (dict(device_target="cpu"), "'device_target' must be one of CPU, GPU, Ascend, got 'cpu' \\(did you mean 'CPU'"),
    (dict(amp_level="O4"), "'amp_level' must be one of O0, O1, O2, O3"),
    (dict(loss_scale="auto"), "'loss_scale' must be one of none, fixed, dynamic"),
    (dict(nesterov=True, optimizer="adam"), "'nesterov' needs optimizer sgd with momentum > 0"),
    (dict(lr=1e-4, min_lr=1e-3), r"'min_lr' \(0.001\) must not exceed 'lr' \(0.0001\)"),
])
def test_bad_value_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
    with pytest.raises(ConfigError, match=message):
        validate_config(Config(**overrides))


def test_engine_implements_exactly_the_config_choices():
    assert set(SCHEDULERS) == set(CHOICES["scheduler"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*", "*.yaml"))),
                         ids=lambda p: os.path.relpath(p, REPO))
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.model and cfg.epochs >= 1
