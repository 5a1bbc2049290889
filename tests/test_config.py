"""Config: YAML + overrides, type checks, value and range checks naming the key, splits by dataset, --help
generated from the schema, and the shipped recipe files."""
import dataclasses
import glob
import importlib
import os
import re
import typing

import pytest

from src.config import (CHOICES, DATASET_SPLITS, ENTRY_POINT_KEYS, RANGES, Config, ConfigError, load_config,
                        parse_overrides, save_config, validate_config)
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
    (dict(device_target="cpu"), "'device_target' must be one of auto, CPU, GPU, Ascend, got 'cpu' \\(did you mean "
                                "'CPU'"),
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


@pytest.mark.parametrize("path", sorted(path for path in glob.glob(os.path.join(REPO, "configs", "*", "*.yaml"))
                                         if os.path.basename(os.path.dirname(path)) != "plans"),  # test_compare_plan
                         ids=lambda p: os.path.relpath(p, REPO))
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.model and cfg.epochs >= 1


# --- ranges --------------------------------------------------------------------------------------------------------

def _is_numeric(hint):
    """int / float, Optional of them, or a list of them (bool is not numeric here)."""
    if typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        (hint,) = typing.get_args(hint)
    return hint in (int, float)


HINTS = typing.get_type_hints(Config)
NUMERIC_KEYS = {f.name for f in dataclasses.fields(Config) if _is_numeric(HINTS[f.name])}
# One value outside each numeric key's range; a new numeric key needs an entry here and a range in RANGES.
OUT_OF_RANGE = dict(
    num_classes=0, in_channels=0, drop_rate=1.0, width=0.0, ghost_ratio=0,
    image_size=0, batch_size=0, eval_batch_size=0, num_workers=0, crop_pct=1.5, mean=[0.5, 0.5], std=[0.2, 0.0, 0.2],
    scale=[0.9, 0.5], ratio=[0.0, 1.0], random_crop_padding=-1, hflip=1.5, color_jitter=-0.1, re_prob=-0.1,
    mixup=-1.0, cutmix=-0.5, mixup_prob=2.0,
    epochs=0, lr=0.0, momentum=-0.1, weight_decay=-1e-4, opt_eps=0.0, betas=[0.9], rmsprop_decay=1.0,
    warmup_epochs=-1.0, warmup_lr=-0.1, min_lr=-1e-6, decay_epochs=0.0, decay_rate=1.5, label_smoothing=1.0,
    ema_decay=1.0, clip_grad_norm=-1.0, loss_scale_value=0.0, seed=-1,
    kd_temperature=0.0, kd_weight=1.5,
    device_id=-1, ckpt_interval=0, ckpt_interval_steps=-1, max_nonfinite_steps=0, keep_checkpoints=0, log_interval=0,
    val_interval=-1, max_steps_per_epoch=-1,
)


def test_every_numeric_key_has_a_range():
    """A numeric key added without a range (or without an out-of-range case here) fails this test."""
    assert {key for keys, _, _ in RANGES for key in keys} == NUMERIC_KEYS
    assert set(OUT_OF_RANGE) == NUMERIC_KEYS


@pytest.mark.parametrize("key", sorted(OUT_OF_RANGE))
def test_out_of_range_value_names_the_key(key):
    with pytest.raises(ConfigError, match=f"config key '{key}' must be "):
        load_config(None, {key: OUT_OF_RANGE[key]})


def test_image_size_zero_on_the_command_line():
    with pytest.raises(ConfigError, match=re.escape("config key 'image_size' must be at least 1, got 0")):
        load_config(None, parse_overrides(["--image_size", "0"]))


def test_values_at_the_edges_of_the_ranges_load():
    cfg = load_config(None, dict(drop_rate=0.0, crop_pct=1.0, hflip=1.0, mixup_prob=0.0, scale=[1.0, 1.0],
                                 ratio=[1.0, 1.0], mean=[0.0], std=[1.0, 1.0, 1.0], seed=0, ghost_ratio=1,
                                 num_classes=1, val_interval=0, color_jitter=1.5))
    assert cfg.scale == [1.0, 1.0] and cfg.ghost_ratio == 1


# --- splits ------------------------------------------------------------------------------------------------------

def test_splits_follow_the_dataset(tmp_path):
    """The README's own-images command: the Pets recipe with --dataset folder validates on DIR/val, not test."""
    pets = os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_pets.yaml")
    assert (load_config(pets).train_split, load_config(pets).val_split) == ("train", "test")
    cfg = load_config(pets, parse_overrides(["--dataset", "folder", "--data_dir", str(tmp_path)]))
    assert (cfg.train_split, cfg.val_split) == ("train", "val")
    cfg = load_config(_yaml(tmp_path, "dataset: folder\nval_split: holdout\n"))
    assert (cfg.train_split, cfg.val_split) == ("train", "holdout")  # a split that is set stays
    save_config(cfg, str(tmp_path / "resolved.yaml"))
    assert "val_split: holdout" in (tmp_path / "resolved.yaml").read_text()


def test_every_dataset_has_default_splits():
    from src.data import DATASETS
    assert set(DATASET_SPLITS) == set(DATASETS)


# --- --help ------------------------------------------------------------------------------------------------------

def _as_written(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else str(value)


def _help_entries(text):
    """{key: its help entry, whitespace collapsed} from a --help text's config-key section."""
    entries, key = {}, None
    for line in text[text.index("\nconfig keys: "):].splitlines():
        match = re.match(r"  --(\w+) ", line)
        if match and " " * 36 != line[:36]:
            key = match.group(1)
            entries[key] = line
        elif key and line.startswith(" " * 36):
            entries[key] += " " + line
        else:
            key = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


def _help_of(main, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_train_help_lists_every_key_with_its_type_default_and_meaning(capsys):
    import train
    text = _help_of(train.main, capsys)
    entries = _help_entries(text)
    assert set(entries) == ENTRY_POINT_KEYS["train.py"]
    for field in (f for f in dataclasses.fields(Config) if f.name in entries):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        entry = entries[field.name]
        assert entry.endswith(f"(default: {_as_written(default)})"), entry
        meaning = entry.split(" ", 2)[2]
        assert len(meaning) > len(f"(default: {_as_written(default)})") + 3, f"{field.name} has no meaning: {entry}"
        for choice in CHOICES.get(field.name, ()):
            assert choice in meaning, (field.name, choice)
    assert "  --image_size int " in text and "  --mean float,...|null " in text
    assert "at least 1 (or null)" in entries["num_classes"]  # the range, from RANGES
    # grouped as in Config, with the section's own note
    order = [text.index(f"\n{title}:\n") for title in ("model", "data", "optimisation", "run")]
    assert order == sorted(order)
    assert "The teacher scores the student's training batches" in text
    # a help text longer than one line is one entry
    assert "(loss-scale overflows included: only a streak stops the run)" in entries["max_nonfinite_steps"]
    assert max(len(line) for line in text.splitlines()) <= 120


@pytest.mark.parametrize("script", ["validate", "export", "predict"])
def test_other_scripts_list_the_config_keys(script, capsys):
    main = importlib.import_module("scripts.predict" if script == "predict" else script).main
    entries = _help_entries(_help_of(main, capsys))
    assert set(entries) == ENTRY_POINT_KEYS[f"{script}.py"]
