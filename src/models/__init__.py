"""Model zoo: `create_model(name, num_classes, in_channels, **options)` and `list_models()`; importing the family
modules registers their variants. `GlobalAvgPool` and `ScaleChannels` are public: passes over built networks
recognise them by type."""
from src.models.layers import GlobalAvgPool, ScaleChannels
from src.models.registry import create_model, list_models, model_info, register_model
from src.models import (ghostnet, ghostnet600, ghostnetv2, ghostnetv3, ghost_resnet, ghost_vgg,  # noqa: F401
                        mobilenetv2, mobilenetv3)

__all__ = ["GlobalAvgPool", "ScaleChannels", "create_model", "list_models", "model_info", "register_model"]
