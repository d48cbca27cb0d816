"""`cnnlab` command line: a thin layer over `cnnlab.api`, one subcommand per function.

Exit codes: 0 ok, 1 internal error (a bug; --debug shows the traceback), 2 bad usage or config,
3 training diverged (NaN/Inf loss), 4 missing or corrupt data, 5 unusable run folder or
checkpoint, 130 interrupted (a checkpoint was written; resume with --resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from typing import Any

from cnnlab import config as C
from cnnlab.errors import EXIT_INTERRUPTED, CnnlabError, ConfigError

# CLI spellings that differ from the config key
ALIASES = {"model.name": "--model", "data.path": "--data"}
HELP = {
    "data.path": "image folder (class per subfolder, or train/val/test) or CSV manifest",
    "model.name": "model name (see `cnnlab models`)",
    "data.dataset": "fashion-mnist (default), folder or csv (set by --data)",
    "optim.lr": "learning rate (head lr when --backbone-lr is given)",
    "optim.schedule": "plateau (lr/10 when val acc stalls), cosine, step, onecycle, none",
    "train.device": "auto (CUDA, then MPS, then CPU), cpu, cuda, mps",
    "model.init": "weight init: default (library), paper (AlexNet/VGG papers), kaiming, xavier",
    "data.augment": "default (dataset recipe), none, light, strong",
    "data.subset": "train on only N images (and at most N val/test): quick checks",
}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config key, generated from the dataclasses so they cannot drift."""
    for section, cls in C.SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            flag = ALIASES.get(key, "--" + f.name.replace("_", "-"))
            default = f.default
            help_text = f"{HELP.get(key, key)} (default: {default})"
            if hints[f.name] is bool:
                group.add_argument(
                    flag,
                    dest=key,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=help_text,
                )
            else:
                group.add_argument(
                    flag, dest=key, default=None, metavar=f.name.upper(), help=help_text
                )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnlab", description="Train and understand CNN image classifiers."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"cnnlab {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (Fashion-MNIST by default)")
    t.add_argument("--config", help="YAML config file (sections data, model, optim, train)")
    t.add_argument("--name", help="run name (folder under --runs-dir); generated when absent")
    t.add_argument("--runs-dir", help="where run folders go (default: runs, or $CNNLAB_RUNS_DIR)")
    t.add_argument("--force", action="store_true", help="retrain a finished run from scratch")
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run, or extend a finished one with --epochs",
    )
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. optim.lr=0.1",
    )
    _add_config_options(t)

    e = sub.add_parser("evaluate", help="evaluate a run's best model")
    e.add_argument("run", help="run folder or name")
    e.add_argument("--split", default="test", choices=["test", "val"])
    e.add_argument("--data", help="another data set with the same classes")
    e.add_argument("--runs-dir")
    e.add_argument("--json", action="store_true", help="print the full report as JSON")

    pr = sub.add_parser("predict", help="top-k classes for image files")
    pr.add_argument("run", help="run folder or name")
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--topk", type=int, default=5)
    pr.add_argument("--runs-dir")
    pr.add_argument("--json", action="store_true")

    s = sub.add_parser("summary", help="layer table: output shapes, parameters, FLOPs, formulas")
    s.add_argument("model")
    s.add_argument("--input", help="CxHxW or a side, e.g. 3x224x224 or 32 (default: native)")
    s.add_argument("--classes", type=int, default=1000)
    s.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="table of registered models: params, FLOPs, weights")
    m.add_argument("--input", type=int, default=224, help="input side for the FLOPs column")
    m.add_argument("--classes", type=int, default=1000)
    m.add_argument("--json", action="store_true")

    c = sub.add_parser("conv", help="show a convolution or pooling step by step on a small matrix")
    c.add_argument(
        "--input",
        default="9x9",
        help="HxW (random ints), HxW:arange, a matrix 'a,b;c,d' or an image file",
    )
    c.add_argument("--filter", help="matrix like '3,0,3;2,0,2;1,0,1' (conv)")
    c.add_argument("--op", default="conv", choices=["conv", "max", "avg"])
    c.add_argument("--kernel", default="3", help="pooling window: N or V,H")
    c.add_argument(
        "--stride",
        default=None,
        help="N or V,H (vertical, horizontal); default 1 for conv, the window for pooling",
    )
    c.add_argument("--padding", default="0", help="N or V,H")
    c.add_argument("--dilation", default="1", help="N or V,H")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--element", default="0,0", help="output element worked out term by term: ROW,COL"
    )

    x = sub.add_parser(
        "experiment", help="a grid of runs over config keys and seeds, with one comparison table"
    )
    x.add_argument("file", help="experiment YAML: name, base, grid and/or runs, seeds")
    x.add_argument("--runs-dir", help="where the experiment folder goes (default: runs)")
    x.add_argument(
        "--parallel", type=int, default=1, metavar="N",
        help="train N runs at a time as subprocesses, CPU threads split between them",
    )  # fmt: skip
    x.add_argument("--dry-run", action="store_true", help="print the plan; train nothing")
    x.add_argument(
        "--rerun-failed", action="store_true",
        help="retrain failed and diverged runs (default: keep them in the table as failed)",
    )  # fmt: skip

    d = sub.add_parser("data", help="data set tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="download a data set (verified, atomic)")
    dl.add_argument("dataset", choices=["fashion-mnist"])
    dl.add_argument("--dest", help="target folder (default: ~/.cache/cnnlab/fashion-mnist)")
    return p


def _version() -> str:
    import cnnlab

    return cnnlab.__version__


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _parse_input(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise ConfigError(f"--input must look like 3x224x224 or 224, got '{text}'") from None
    if len(parts) == 1:
        return None if parts[0] <= 0 else (-1, parts[0], parts[0])
    if len(parts) == 2:
        return (-1, parts[0], parts[1])
    if len(parts) == 3:
        return (parts[0], parts[1], parts[2])
    raise ConfigError(f"--input must look like 3x224x224 or 224, got '{text}'")


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab import api

    api.train(
        args.config, name=args.name, runs_dir=args.runs_dir, force=args.force, resume=args.resume,
        **_overrides(args),
    )  # fmt: skip
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnlab import api

    report = api.evaluate(args.run, split=args.split, data=args.data, runs_dir=args.runs_dir,
                          log=(lambda s: None) if args.json else print)  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab import api

    results = api.predict(args.run, args.images, topk=args.topk, runs_dir=args.runs_dir)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['prob']:7.2%}  {t['class']}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab import api
    from cnnlab.models.registry import get_model_info

    shape = _parse_input(args.input)
    if shape is not None and shape[0] == -1:
        info = get_model_info(args.model)
        shape = (info.in_chans, shape[1], shape[2])
    result = api.summary(args.model, input_shape=shape, num_classes=args.classes)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_text())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from cnnlab import api
    from cnnlab.models.catalog import format_model_table

    rows = api.models(input_size=args.input, num_classes=args.classes)
    print(json.dumps(rows, indent=2, default=str) if args.json else format_model_table(rows))
    return 0


def cmd_conv(args: argparse.Namespace) -> int:
    from cnnlab.convdemo import run_conv_demo

    try:
        text = run_conv_demo(
            args.input, args.filter, stride=args.stride, padding=args.padding,
            dilation=args.dilation, op=args.op, kernel=args.kernel, seed=args.seed,
            element=args.element,
        )  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    print(text)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from cnnlab.data.fashion_mnist import download_fashion_mnist

    folder = download_fashion_mnist(args.dest)
    print(f"Fashion-MNIST is in {folder}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from cnnlab.experiment import load_experiment, run_experiment

    if args.dry_run:
        print(load_experiment(args.file).plan(args.runs_dir, rerun_failed=args.rerun_failed))
        return 0
    result = run_experiment(
        args.file, runs_dir=args.runs_dir, parallel=args.parallel, rerun_failed=args.rerun_failed
    )
    # 0 even when some runs failed: the experiment completed and its table says which
    print(result.summary())
    return 0


COMMANDS = {
    "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "summary": cmd_summary,
    "models": cmd_models, "conv": cmd_conv, "data": cmd_data, "experiment": cmd_experiment,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CnnlabError as e:
        if args.debug:
            raise
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: say so, keep the traceback behind --debug
        if args.debug:
            raise
        print(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug and report it",
              file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
