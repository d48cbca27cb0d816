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
