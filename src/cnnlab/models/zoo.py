"""Importing this module registers every model family."""

from cnnlab.models import backbones, classic, small  # noqa: F401
