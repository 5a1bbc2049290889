"""Optimizers over two parameter groups: weight decay on conv and dense weights, none on BN parameters and biases.

Decaying BN scales and biases only pulls them towards zero without regularising anything (timm's
`filter_bias_and_bn`); `order_params` keeps the optimizer's state in the network's parameter order.
"""
import mindspore as ms
import mindspore.nn as nn


def parameter_groups(params, weight_decay: float, filter_bias_and_bn: bool = True):
    """MindSpore group list; 1-D parameters (BN gamma/beta, biases) get no decay when filtering."""
    if not filter_bias_and_bn:
        return [{"params": params, "weight_decay": weight_decay}, {"order_params": params}]
    decay = [p for p in params if p.ndim > 1 and not p.name.endswith(".bias")]
    no_decay = [p for p in params if p.ndim <= 1 or p.name.endswith(".bias")]
    groups = [{"params": group, "weight_decay": wd} for group, wd in ((decay, weight_decay), (no_decay, 0.0)) if group]
    return groups + [{"order_params": params}]


def create_optimizer(cfg, params, lr_schedule) -> nn.Optimizer:
    """`cfg.optimizer` over `params`; `lr_schedule` holds one LR per step (see lr_schedule.py)."""
    groups = parameter_groups(params, cfg.weight_decay, cfg.filter_bias_and_bn)
    lr = ms.Tensor(lr_schedule)
    beta1, beta2 = cfg.betas
    builders = {
        "sgd": lambda: nn.SGD(groups, learning_rate=lr, momentum=cfg.momentum, nesterov=cfg.nesterov),
        "rmsprop": lambda: nn.RMSProp(groups, learning_rate=lr, decay=cfg.rmsprop_decay, momentum=cfg.momentum,
                                      epsilon=cfg.opt_eps),
        "adam": lambda: nn.Adam(groups, learning_rate=lr, beta1=beta1, beta2=beta2, eps=cfg.opt_eps),
        "adamw": lambda: nn.AdamWeightDecay(groups, learning_rate=lr, beta1=beta1, beta2=beta2, eps=cfg.opt_eps),
    }
    if cfg.optimizer not in builders:
        raise ValueError(f"unknown optimizer '{cfg.optimizer}'; known: {', '.join(builders)}")
    return builders[cfg.optimizer]()
