"""Import before torchvision or timm in the reference environment (build.sh): torchvision 0.28 from PyPI is built
against a CUDA torch, so beside the CPU torch its compiled ops do not load and its import fails on two operator
schemas they would have registered (`operator torchvision::nms does not exist`). Defining the schemas first lets
`import torchvision` and `import timm` work; torchvision's detection ops (nms) stay unusable, and nothing here
needs them."""
import torch

try:
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
except RuntimeError:  # already defined: torchvision's own ops loaded, or the shim was imported before
    pass
