"""Trainer set-up details: when the progress bar shows."""


def test_progress_shows_on_terminals_and_in_notebooks_not_in_logs(monkeypatch):
    import sys
    import types

    from cnnlab.engine.trainer import interactive_output

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert interactive_output() is False  # a log file or a pipe
    shell = type("ZMQInteractiveShell", (), {})()  # what Jupyter's kernel runs
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert interactive_output() is True
    terminal = type("TerminalInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: terminal))
    assert interactive_output() is False  # plain IPython in a pipe: no bar


def test_cpu_batches_are_not_walked_and_other_devices_still_get_theirs():
    import torch

    from cnnlab.config import Config
    from cnnlab.engine.trainer import BundleDataModule

    data = BundleDataModule(bundle=None, cfg=Config())
    batch = (torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]), torch.tensor([5, 6]))
    assert data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = data.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert [t.device.type for t in moved] == ["meta"] * 3
