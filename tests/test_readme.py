"""The README's Python example for `cnnlab.fit` runs as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_fit_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (example,) = [b for b in blocks if "cnnlab.fit(" in b]
    monkeypatch.setenv("CNNLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    result, again = scope["result"], scope["again"]
    assert result.run_dir == tmp_path / "runs" / "mine" and result.test["accuracy"] >= 0.9
    x = scope["x"][:16]
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), result.model.eval()(x))
