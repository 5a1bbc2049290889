"""Helpers for the engine, train and validate tests: a tiny registered model that compiles in seconds and a
config over a small generated IDX dataset (tests/data_fixtures.py)."""
import mindspore.nn as nn
import mindspore.ops as ops

from src.config import Config, default_splits, save_config
from src.models import list_models, register_model
from tests.data_fixtures import make_idx_dataset


class TinyNet(nn.Cell):
    """conv-BN-ReLU, strided conv-BN-ReLU, global pool, dense: the child names of the zoo's models."""

    def __init__(self, num_classes=10, in_channels=1, width=8, drop_rate=0.0):
        super().__init__()
        self.conv_stem = nn.Conv2d(in_channels, width, 3, pad_mode="same", has_bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv_head = nn.Conv2d(width, 2 * width, 3, stride=2, pad_mode="same", has_bias=True)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = nn.Dense(2 * width, num_classes)

    def construct(self, x):
        x = ops.relu(self.bn1(self.conv_stem(x)))
        x = ops.relu(self.bn2(self.conv_head(x)))
        return self.classifier(self.dropout(x.mean(axis=(2, 3))))


if "tiny_net" not in list_models():  # this module may be imported under two names (rootdir / tests)
    @register_model("test", input_size=(1, 16, 16))
    def tiny_net(num_classes=10, in_channels=1, small_input=False, drop_rate=0.0, width=None):
        return TinyNet(num_classes, in_channels, int(width or 8), drop_rate)


class TinyPlainNet(nn.Cell):
    """TinyNet without BatchNorm and dropout: its step depends only on the batch's mean gradient, so a data-parallel
    run matches a single-process run with the combined batch (per-device BN statistics would make them differ)."""

    def __init__(self, num_classes=10, in_channels=1, width=8):
        super().__init__()
        self.num_classes = num_classes
        self.conv_stem = nn.Conv2d(in_channels, width, 3, pad_mode="same", has_bias=True)
        self.conv_head = nn.Conv2d(width, 2 * width, 3, stride=2, pad_mode="same", has_bias=True)
        self.classifier = nn.Dense(2 * width, num_classes)

    def construct(self, x):
        x = ops.relu(self.conv_head(ops.relu(self.conv_stem(x))))
        return self.classifier(x.mean(axis=(2, 3)))


if "tiny_plain_net" not in list_models():
    @register_model("test", input_size=(1, 16, 16))
    def tiny_plain_net(num_classes=10, in_channels=1, small_input=False, drop_rate=0.0, width=None):
        return TinyPlainNet(num_classes, in_channels, int(width or 8))


def tiny_config(tmp_path, **overrides) -> Config:
    """tiny_net on 96 training / 40 validation (test split) 16 px images, 12 steps of 8 per epoch, files under
    tmp_path."""
    data_dir = make_idx_dataset(str(tmp_path / "idx"), n_train=96, n_test=40, size=16)
    values = dict(model="tiny_net", dataset="fashion_mnist", data_dir=data_dir, image_size=16, batch_size=8,
                  num_workers=1, hflip=0.0, scale=[0.5, 1.0], epochs=2, optimizer="adamw", lr=0.01,
                  weight_decay=0.01, warmup_epochs=0.5, drop_rate=0.0, output_dir=str(tmp_path / "run"),
                  log_interval=4, mode="graph")
    cfg = Config(**{**values, **overrides})
    default_splits(cfg)  # as load_config does: the dataset's splits (fashion_mnist: train / test)
    return cfg


def write_config(cfg: Config, path) -> str:
    """The config as a YAML file, for train.py / validate.py's --config."""
    save_config(cfg, str(path))
    return str(path)
