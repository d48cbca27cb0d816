"""Errors a user can act on.

Every error that reaches the CLI is a `CnnlabError`: its message is one line that names the
problem and the fix, and its `exit_code` is what `cnnlab` returns. Anything else is a bug and
shows a traceback only with `--debug`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Documented in the README ("Exit codes"); tests assert them.
EXIT_OK = 0
EXIT_USAGE = 2  # bad option, config value or name
EXIT_DIVERGED = 3  # NaN/Inf loss stopped the run
EXIT_DATA = 4  # missing or corrupt data
EXIT_RUN = 5  # unusable run folder or checkpoint
EXIT_DISK_FULL = 6  # no space left while writing; the last good checkpoint is intact
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM, checkpoint written


class CnnlabError(Exception):
    exit_code = EXIT_USAGE


class ConfigError(CnnlabError):
    exit_code = EXIT_USAGE


class DataError(CnnlabError):
    exit_code = EXIT_DATA


class DataChangedError(DataError):
    """Files of a run's data changed or vanished after they were checked. The message says
    what; the layer that knows the run adds the command that continues without them."""


class RunError(CnnlabError):
    exit_code = EXIT_RUN


class CheckpointError(RunError):
    pass


class UnsafeCheckpointError(CheckpointError):
    pass


class DiskFullError(RunError):
    exit_code = EXIT_DISK_FULL


class DivergedError(CnnlabError):
    exit_code = EXIT_DIVERGED


class InterruptedRun(CnnlabError):
    exit_code = EXIT_INTERRUPTED


def message_of(e: BaseException) -> str:
    """The one line a user sees for an error. An error raised in a DataLoader worker process
    comes back as 'Caught X in DataLoader worker process N.' followed by the worker's
    traceback, whose last line is 'module.X: the message': that message is the line."""
    text = str(e).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text.splitlines()[0] if text else ""


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str], fix: str = "") -> ConfigError:
    choices = sorted(choices)
    hint = suggest(name, choices)
    listing = fix or f"choose one of: {', '.join(choices)}"
    return ConfigError(f"unknown {kind} '{name}'{hint}; {listing}")
