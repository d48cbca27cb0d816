"""Which device a run trains on, and how its processes are launched; decided before anything
is written, so an impossible setting is a usage error and never a half-made run folder."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cnnlab.config import Config
from cnnlab.errors import ConfigError
from cnnlab.runtime import available_cpus, cpu_threads

# Set by torchrun (TORCHELASTIC_RUN_ID, LOCAL_RANK) and SLURM's srun (SLURM_NTASKS).
LAUNCHER_VARS = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LOCAL_RANK")


@dataclass(frozen=True)
class DevicePlan:
    accelerator: str  # cpu | cuda | mps
    reason: str  # printed at the start: the first sanity check a user wants to see
    strategy: str  # auto (one process) | ddp | ddp_fork
    notes: tuple[str, ...] = ()  # warnings: legal but slow settings


def plan_device(cfg: Config) -> DevicePlan:
    accelerator, reason = choose_device(cfg.train.device, cfg.train.threads)
    notes = check_accelerator_settings(cfg, accelerator)
    check_processes(cfg, accelerator)
    return DevicePlan(accelerator, reason, strategy_for(cfg, accelerator), tuple(notes))


def cpu_threads_text(threads: int | None) -> str:
    """ "2 CPU threads", or why fewer than asked for (`runtime.cpu_threads`)."""
    import torch

    used = torch.get_num_threads() if threads is None else cpu_threads(threads)
    text = f"{used} CPU thread{'s' if used != 1 else ''}"
    if threads is not None and used < threads:
        cpus = available_cpus()
        text += (
            f" (--threads {threads}, but this process may run on {cpus} "
            f"CPU{'s' if cpus != 1 else ''} only)"
        )
    return text


def choose_device(requested: str, threads: int | None = None) -> tuple[str, str]:
    """(accelerator, why); on the CPU the why names the torch threads the run will use."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        if cuda:
            return "cuda", f"CUDA device found: {torch.cuda.get_device_name(0)}"
        if mps:
            return "mps", "Apple MPS device found (no CUDA)"
        return "cpu", f"no CUDA or MPS device found; {cpu_threads_text(threads)}"
    if requested == "cuda" and not cuda:
        raise ConfigError(
            "--device cuda asked for, but no CUDA device is visible; use --device auto"
        )
    if requested == "mps" and not mps:
        raise ConfigError("--device mps asked for, but MPS is not available; use --device auto")
    return requested, "asked for with --device"


def check_accelerator_settings(cfg: Config, accelerator: str) -> list[str]:
    """Errors for settings this device cannot honour, warnings for slow ones."""
    if cfg.train.sync_batchnorm and accelerator != "cuda":
        raise ConfigError(
            "--sync-batchnorm needs CUDA devices (PyTorch's SyncBatchNorm); drop it on CPU"
        )
    return check_precision(cfg.train.precision, accelerator)


def check_precision(precision: str, accelerator: str) -> list[str]:
    if accelerator == "cpu" and precision == "16-mixed":
        raise ConfigError(
            "--precision 16-mixed needs a GPU; on a CPU use --precision 32 (or bf16-mixed on CPUs "
            "with AMX/AVX512-BF16)"
        )
    if accelerator == "cpu" and precision == "bf16-mixed":
        return ["bf16-mixed on a CPU is only faster with AMX/AVX512-BF16; often --precision 32 is"]
    return []


def launched() -> bool:
    """True when a launcher (torchrun, srun) started this process as one rank of many."""
    return any(k in os.environ for k in LAUNCHER_VARS)


def check_processes(cfg: Config, accelerator: str) -> None:
    """The global batch must split over the processes, and several machines need a launcher."""
    t = cfg.train
    world = t.devices * t.num_nodes
    if cfg.data.batch_size % world:
        raise ConfigError(
            f"--batch-size {cfg.data.batch_size} does not split over {world} processes "
            f"({t.devices} devices x {t.num_nodes} nodes); use a multiple of {world}, e.g. "
            f"{cfg.data.batch_size - cfg.data.batch_size % world or world}"
        )
    if t.num_nodes > 1 and not launched():
        raise ConfigError(
            f"--num-nodes {t.num_nodes} needs a launcher that starts cnnlab on every machine: "
            f"torchrun --nnodes {t.num_nodes} --nproc-per-node {t.devices} --node-rank R "
            f"--master-addr HOST --master-port 29500 -m cnnlab train ... (or srun); see the "
            f"README's 'Many GPUs'"
        )
    if accelerator == "cuda":
        import torch

        if t.devices > torch.cuda.device_count():
            raise ConfigError(
                f"--devices {t.devices} asked for, but {torch.cuda.device_count()} CUDA devices "
                f"are visible; use --devices {torch.cuda.device_count()}"
            )


def strategy_for(cfg: Config, accelerator: str) -> str:
    t = cfg.train
    if t.devices == 1 and t.num_nodes == 1:
        return "auto"
    if accelerator == "cpu" and not launched():
        return "ddp_fork"
    return "ddp"
