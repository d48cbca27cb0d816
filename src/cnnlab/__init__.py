"""cnnlab: train, evaluate and understand convolutional image classifiers."""

__version__ = "0.1.0"

from cnnlab.api import evaluate, models, predict, summary, train  # noqa: E402
from cnnlab.models.registry import create_model, list_models  # noqa: E402

__all__ = ["train", "evaluate", "predict", "summary", "models", "create_model", "list_models"]
