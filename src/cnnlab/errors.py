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


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str], fix: str = "") -> ConfigError:
    choices = sorted(choices)
    hint = suggest(name, choices)
    listing = fix or f"choose one of: {', '.join(choices)}"
    return ConfigError(f"unknown {kind} '{name}'{hint}; {listing}")
