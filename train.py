"""Train a model of the zoo: config, context, data, model, loss, optimizer, loop (mechanisms live in src/engine).

Single device (the default main job: GhostNet 1.0x on Fashion-MNIST, CPU):
    python train.py --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml
    python train.py --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml --mode pynative --epochs 1
Eight devices, data parallel (rank, data shard and gradient averaging come from src/distributed):
    mpirun -n 8 python train.py --config configs/ghostnet/ghostnet_100_imagenet.yaml --data_dir /path/to/imagenet
Continue an interrupted run where it stopped:   --resume auto   (or --resume PATH/epoch_NNNN[_step_SSSS].ckpt, or
--resume RUN_FOLDER alone: the folder's config.yaml is the recipe). A resume names every key that differs from the
folder's config.yaml and refuses those that would make the run differ from an uninterrupted one unless
--allow_changed_recipe true; a new run into a folder with an earlier run's checkpoints stops unless --replace_run true.
Ctrl-C / SIGTERM save the state after the current step, then exit with status 130 / 143 (a Ctrl-C inside a step
arrives as SIGTERM: 143; a second signal stops at once, checkpoint writes being atomic);
--ckpt_interval_steps N also saves one every N steps. Exit status 1: an error, or max_nonfinite_steps
consecutive non-finite losses (nothing written after the last good step).
Fine-tune from a checkpoint with another head:  --pretrained CKPT
Knowledge distillation:  --teacher_model NAME --teacher_ckpt CKPT (or --teacher_mindir FILE) [--kd_temperature T]
                         [--kd_weight ALPHA]; the teacher is never trained nor saved in the checkpoints
Every key of src/config.py's Config that training reads is a flag (--key value), e.g. --device_target GPU
--amp_level O2; --help lists them. The device is the best one this MindSpore build and machine can use unless
--device_target names one. Holds output_dir while it runs (.lock names the holder) and writes to it: config.yaml
(the resolved config), epoch_NNNN.ckpt (resumable), best.ckpt (best validation top-1), metrics.json / metrics.csv,
loss_curve.png and accuracy_curve.png; a full or read-only disk ends the run in one line naming the file.
"""
import os
import sys

import src  # noqa: F401  (before mindspore: caps oneDNN's ISA)
from src.analysis.profile import count_params
from src.atomic_files import WriteError
from src.checkpoint import CheckpointError, load_pretrained
from src.config import ConfigError, config_from_command_line, prepare_output_dir, save_config
from src.configured_model import for_this_device, model_for_data
from src.data import DatasetError, create_dataset
from src.device import placement, setup_context
from src.distributed import init_distributed
from src.distributed.agreement import RanksDisagree, check_ranks_agree, run_fingerprint
from src.engine import run_folder
from src.engine import (DistillationLoss, EpochData, ModelEMA, NonFiniteLossError, SoftTargetCrossEntropy, Trainer,
                        TrainingInterrupted, TrainingState, TrainStep, build_lr_schedule, build_teacher,
                        create_loss_scaler, create_optimizer, gradient_reducer, loss_scaler_state, mixed_precision)
from src.models import model_info


def main(argv=None):
    cfg = config_from_command_line(argv, __doc__, "train.py")

    device = setup_context(cfg, training=True)  # before any data is read: an unusable device fails here
    dist = init_distributed(device)
    print(placement(cfg).line(dist.rank, dist.world_size), flush=True)  # every rank's first line: what it got
    if not dist.is_main:  # rank 0 holds the (shared) output folder for the whole run
        return train(cfg, dist, device)
    prepare_output_dir(cfg.output_dir)
    with run_folder.hold(cfg.output_dir):
        run_folder.claim(cfg)
        return train(cfg, dist, device)


def train(cfg, dist, device):
    """Data, model, loss, optimizer and the loop of the run `cfg` describes."""
    train_data = EpochData(cfg, dist)
    val_data, val_info = create_dataset(cfg, cfg.val_split, training=False, num_shards=dist.world_size,
                                        shard_id=dist.rank,  # each rank validates its shard
                                        class_names=train_data.info.class_names)  # label k: training's class k
    info = train_data.info
    check_ranks_agree(dist, run_fingerprint(cfg, {"train": info, "val": val_info}))  # before config.yaml
    if dist.is_main:
        save_config(cfg, os.path.join(cfg.output_dir, "config.yaml"))

    network = for_this_device(model_for_data(cfg, info), cfg)  # before the optimizer: it swaps cells, not parameters
    if dist.is_main:  # the run's summary
        print(f"{cfg.model}: {count_params(network) / 1e6:.2f}M parameters, {info.num_classes} classes, "
              f"{info.in_channels} channel(s), {cfg.image_size} px | train {info.num_samples} images "
              f"({cfg.train_split}), val {val_info.num_samples} ({cfg.val_split}) | {dist.world_size} device(s), "
              f"{device}, {cfg.mode} mode, AMP {cfg.amp_level}")
    if cfg.pretrained:
        dropped = load_pretrained(network, cfg.pretrained, model_info(cfg.model).classifier)
        print(f"fine-tuning from {cfg.pretrained}" +
              (f"; re-initialised classifier, dropped checkpoint keys: {', '.join(dropped)}" if dropped else ""))
    teacher = build_teacher(cfg, cfg.num_classes or info.num_classes, cfg.in_channels or info.in_channels)
    if teacher is not None and dist.is_main:
        print(f"distilling from {teacher.description}: temperature {cfg.kd_temperature:g}, "
              f"kd_weight (alpha) {cfg.kd_weight:g}")
    network = mixed_precision(network, cfg.amp_level)

    if teacher is None:
        loss_fn = SoftTargetCrossEntropy(cfg.label_smoothing)
    else:
        loss_fn = DistillationLoss(cfg.label_smoothing, cfg.kd_temperature, cfg.kd_weight)

    lr_schedule = build_lr_schedule(cfg, train_data.steps_per_epoch)
    optimizer = create_optimizer(cfg, network.trainable_params(), lr_schedule)
    ema = ModelEMA(network, cfg.ema_decay) if cfg.ema else None
    loss_scaler = create_loss_scaler(cfg)
    train_step = TrainStep(network, loss_fn, optimizer, ema=ema, clip_grad_norm=cfg.clip_grad_norm,
                           loss_scaler=loss_scaler, grad_reducer=gradient_reducer(dist, optimizer.parameters))

    state = TrainingState(network, optimizer, ema, loss_scaler_state(loss_scaler))
    Trainer(cfg, dist, network, train_step, train_data, val_data, lr_schedule, state, ema, teacher=teacher).fit()


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DatasetError, CheckpointError, NonFiniteLossError, RanksDisagree, run_folder.RunFolderError,
            WriteError) as err:
        sys.exit(f"train.py: error: {err}")
    except TrainingInterrupted as err:  # SIGINT / SIGTERM: the state was saved; exit 130 / 143
        print(err, file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
