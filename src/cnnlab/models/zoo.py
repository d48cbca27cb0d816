"""Importing this module registers every model family, then gives the torchvision/timm
architectures their pretrained-weight specs (kept apart from the architectures)."""

from cnnlab.models import backbones, classic, efficientnet_lite, small  # noqa: F401
from cnnlab.models.hub_weights import HUB_WEIGHTS
from cnnlab.models.registry import attach_weights

attach_weights(HUB_WEIGHTS)
