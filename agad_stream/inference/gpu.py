"""Which NVIDIA GPU this process would run on, found without importing a CUDA library if possible.

TensorRT engines are specific to a GPU model and its compute capability, so engine files are named
after :func:`gpu_slug` and checked against :class:`GpuInfo` before loading. Detection asks torch
when it is already imported (it knows ``CUDA_VISIBLE_DEVICES``), else ``nvidia-smi``; importing
torch or TensorRT only to answer "is there a GPU?" would cost an ONNX Runtime host seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    """A GPU model as TensorRT sees it: marketing name and compute capability (major, minor)."""

    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        """``"sm90"`` for compute capability 9.0."""
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    def __str__(self) -> str:
        major, minor = self.compute_capability
        return f"{self.name} (compute capability {major}.{minor})"


def gpu_slug(gpu: GpuInfo) -> str:
    """File-name-safe id of a GPU model, e.g. ``nvidia-h200-sm90``; engines are named after it."""
    name = re.sub(r"[^a-z0-9]+", "-", gpu.name.lower()).strip("-") or "gpu"
    return f"{name}-{gpu.sm}"


def detect_gpu() -> GpuInfo | None:
    """The first visible NVIDIA GPU, or None when there is none (or no driver to ask)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability(0)
                return GpuInfo(torch.cuda.get_device_name(0), (int(major), int(minor)))
        except RuntimeError:  # a broken driver install: treat as no GPU
            return None
        return None
    return _nvidia_smi()


def _nvidia_smi() -> GpuInfo | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    command = [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible in ("-1", "") and "CUDA_VISIBLE_DEVICES" in os.environ:
        return None  # CUDA_VISIBLE_DEVICES="" or -1 hides every GPU
    if visible:
        command.append(f"--id={visible}")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def parse_nvidia_smi(output: str) -> GpuInfo | None:
    """The first GPU in ``nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader`` output."""
    for line in output.splitlines():
        name, sep, capability = line.rpartition(",")
        major, dot, minor = capability.strip().partition(".")
        if sep and dot and major.isdigit() and minor.isdigit() and name.strip():
            return GpuInfo(name.strip(), (int(major), int(minor)))
    return None
