"""Where a run computes: choosing the device, seeding every generator, and the facts about
the device that a run's provenance records (GPU name, CUDA and driver versions, TF32)."""

from __future__ import annotations

import platform
import random
import subprocess

import numpy as np
import torch

from .config import ConfigError

__all__ = ["select_device", "seed_everything", "device_facts", "gpu_driver_version"]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> torch.device:
    """CUDA if available, then MPS, then CPU; an explicit name must be available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"bad device {name!r}: {e}") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available.get(device.type, False):
        usable = ", ".join(["auto"] + [k for k, ok in available.items() if ok])
        raise ConfigError(f"device {name!r} is not available here; use one of: {usable}")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_facts(device: torch.device) -> dict:
    """What a run computed on: the device, its name and, on CUDA, the GPU's name, the CUDA
    and driver versions and whether float32 matrix products may use TF32 (each None on the
    CPU)."""
    facts = {"gpu_name": None, "cuda_version": None, "gpu_driver_version": None, "tf32": None}
    if device.type == "cuda":
        facts |= {
            "gpu_name": torch.cuda.get_device_name(device),
            "cuda_version": torch.version.cuda,
            "gpu_driver_version": gpu_driver_version(),
            # "highest" keeps float32 products in float32; "high"/"medium" allow TF32/bf16
            "tf32": torch.get_float32_matmul_precision() != "highest",
        }
        name = facts["gpu_name"]
    else:
        cpu = platform.processor() or platform.machine()
        name = f"{device.type} ({cpu}, {torch.get_num_threads()} threads)"
    return {"device": str(device), "device_name": name, **facts}


def gpu_driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi``, or None where it cannot be read."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None
