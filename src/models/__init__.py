"""Model zoo: `create_model(name, num_classes, in_channels, **options)` and `list_models()`.

Importing the family modules registers their variants.
"""
from src.models.registry import create_model, list_models, model_info, register_model
from src.models import (ghostnet, ghostnet600, ghostnetv2, ghostnetv3, ghost_resnet, ghost_vgg,  # noqa: F401
                        mobilenetv2, mobilenetv3)

__all__ = ["create_model", "list_models", "model_info", "register_model"]
