"""Importing this module registers every model family."""

from cnnlab.models import small  # noqa: F401
