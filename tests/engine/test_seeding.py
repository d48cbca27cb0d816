import random
import traceback

import pytest
import torch

from cnnlab.engine.seeding import seed_step
from cnnlab.seeds import derive_seed


def test_seed_step_draws_what_torch_manual_seed_drew():
    # the CPU generator and Python's random get derive_seed(seed, step, rank, 0xD50), as they did
    # with torch.manual_seed: runs stay bitwise what they were
    torch.manual_seed(derive_seed(7, 123, 1, 0xD50))
    random.seed(derive_seed(7, 123, 1, 0xD50))
    expected = (torch.rand(5), torch.nn.functional.dropout(torch.ones(8), 0.5), random.random())
    torch.manual_seed(999)  # anything else in between
    seed_step(7, 123, 1, torch.device("cpu"))
    got = (torch.rand(5), torch.nn.functional.dropout(torch.ones(8), 0.5), random.random())
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert got[2] == expected[2]
    seed_step(7, 124, 1)
    assert not torch.equal(torch.rand(5), expected[0])  # another step, other numbers


def test_seed_step_does_not_queue_accelerator_seeds(monkeypatch):
    # torch.manual_seed queues a seed for every uninitialised accelerator backend with a
    # traceback.format_stack() each: milliseconds per training step
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised here: nothing is queued")

    def stack(*args, **kwargs):
        raise AssertionError("traceback.format_stack called")

    monkeypatch.setattr(traceback, "format_stack", stack)
    seed_step(0, 1, 0, torch.device("cpu"))
    with pytest.raises(AssertionError, match="format_stack"):
        torch.manual_seed(1)  # the call it replaces does
