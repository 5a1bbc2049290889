"""Model zoo: `create_model(name, num_classes, in_channels, **options)` and `list_models()`.

Importing the family modules registers their variants.
"""
from src.models.registry import create_model, list_models, model_info, register_model
from src.models import ghostnet, ghostnet600, ghost_resnet, ghost_vgg, mobilenetv2, mobilenetv3  # noqa: F401

__all__ = ["create_model", "list_models", "model_info", "register_model"]
