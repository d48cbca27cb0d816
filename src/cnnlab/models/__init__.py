"""The model zoo. Importing this package registers every family, then gives the torchvision and
timm architectures their pretrained-weight specs (kept apart from the architectures).

    from cnnlab.models import create_model
    model = create_model("resnet18", num_classes=10, in_chans=1, input_size=28)
"""

from cnnlab.models import backbones, classic, efficientnet_lite, small  # noqa: F401
from cnnlab.models.factory import INIT_SCHEMES, create_model, get_model_info, list_models
from cnnlab.models.hub_weights import HUB_WEIGHTS
from cnnlab.models.registry import ModelInfo, attach_weights, register_model

attach_weights(HUB_WEIGHTS)

__all__ = [
    "create_model", "get_model_info", "list_models", "register_model", "ModelInfo", "INIT_SCHEMES",
]  # fmt: skip

from cnnlab.callable_package import make_callable  # noqa: E402

make_callable(__name__, "models")  # cnnlab.models(input_size=224): the zoo table
