import torch
from torch.utils.data import TensorDataset

from cnnlab.evaluation.inference import predict_logits
from cnnlab.explain import cam
from cnnlab.models.registry import create_model


def test_predicting_leaves_the_model_usable_with_autograd():
    # the report predicts a split, then computes Grad-CAM with the same model
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, in_chans=1, input_size=28)
    data = TensorDataset(torch.randn(5, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1]))
    logits, targets = predict_logits(model, data, batch_size=2)
    assert logits.shape == (5, 3) and targets.tolist() == [0, 1, 2, 0, 1]
    assert not any(p.is_inference() for p in model.parameters())
    with torch.no_grad():
        expected = model(data.tensors[0]).numpy()
    torch.testing.assert_close(torch.from_numpy(logits), torch.from_numpy(expected))
    assert cam(model, data.tensors[0][0], 1).shape == (28, 28)
