"""Why did the model say that? Grad-CAM and Grad-CAM++ heatmaps for any registered model.

    from cnnlab.explain import cam, explain

    explain("runs/demo", ["shoe.png"])  # -> runs/demo/explain/shoe.gradcam.png
    heat = cam(model, x, target_class=3)  # (H, W) in [0, 1]

`explain` works on a run folder and image files; `cam` on a model and a preprocessed tensor.
"""

from cnnlab.explain.gradcam import CamMethod, TargetLayer, cam, cam_method, find_target_layer
from cnnlab.explain.images import ExplainResult, explain

__all__ = [
    "CamMethod", "ExplainResult", "TargetLayer", "cam", "cam_method", "explain",
    "find_target_layer",
]  # fmt: skip

from cnnlab.callable_package import make_callable  # noqa: E402

make_callable(__name__, "explain")
