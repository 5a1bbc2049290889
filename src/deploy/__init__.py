"""Deployment: the inference form of a network (fuse.py), calling it for serving (serving.py) and running exported
MINDIR / ONNX files (exported.py)."""
from src.deploy.exported import ExportedModel, ExportedModelError, load_exported
from src.deploy.fuse import fold_batchnorm, prepare_for_inference, reparameterize
from src.deploy.serving import serving_function

__all__ = ["ExportedModel", "ExportedModelError", "fold_batchnorm", "load_exported", "prepare_for_inference",
           "reparameterize", "serving_function"]
