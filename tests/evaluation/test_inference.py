"""Evaluation on the folded inference copy: the model's own eval outputs, the model untouched."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from cnnlab.evaluation.inference import predict_logits, predict_tensor
from cnnlab.models import create_model


def _trained_looking_model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=4)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def test_logits_equal_the_eval_model_and_the_model_is_left_as_it_was():
    model = _trained_looking_model().train()
    x, y = torch.randn(10, 1, 28, 28), torch.arange(10) % 4
    logits, targets = predict_logits(model, TensorDataset(x, y), batch_size=4)
    assert model.training  # the caller's mode is kept
    assert next(model.parameters()).is_contiguous()  # and its memory format
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=1e-4)
    assert targets.tolist() == y.tolist()
    batched = predict_tensor(model, x, batch_size=3)
    torch.testing.assert_close(torch.from_numpy(batched), expected, rtol=0, atol=1e-4)


def test_a_batch_transform_is_applied_before_the_model():
    model = _trained_looking_model().eval()
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)

    class Scale(nn.Module):
        def forward(self, t):
            return t.float() / 255.0

    logits, _ = predict_logits(model, TensorDataset(x, torch.zeros(5)), batch_transform=Scale())
    with torch.no_grad():
        expected = model(x.float() / 255.0)
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=1e-4)


def test_predicting_leaves_the_model_usable_with_autograd():
    # the report predicts a split, then computes Grad-CAM with the same model
    from cnnlab.explain import cam

    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, in_chans=1, input_size=28)
    data = TensorDataset(torch.randn(5, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1]))
    predict_logits(model, data, batch_size=2)
    assert not any(p.is_inference() for p in model.parameters())
    assert cam(model, data.tensors[0][0], 1).shape == (28, 28)
