"""How much memory training may still use: the RAM (MemAvailable, capped by a cgroup limit) and a
GPU's free memory.

Importing this module imports no framework. :func:`gpu_available` asks torch only when the caller
allows it to start CUDA (a single-process torch run on that GPU, which starts it anyway);
otherwise it asks ``nvidia-smi``, which starts nothing in this process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# cgroup v1 reports "no limit" as a huge page-rounded number.
_V1_UNLIMITED = 2**62


@dataclass(frozen=True)
class Budget:
    """Memory available in one place: ``where`` is "RAM" or a GPU ("cuda:0")."""

    where: str
    bytes: int
    source: str          # how it was measured, for messages

    def to_dict(self) -> dict[str, object]:
        return {"where": self.where, "bytes": int(self.bytes), "source": self.source}


# ---------------------------------------------------------------------- RAM

def _meminfo_available(path: str = "/proc/meminfo") -> Optional[int]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _system_available() -> Optional[tuple[int, str]]:
    try:
        import psutil
    except ImportError:
        value = _meminfo_available()
        return (value, "MemAvailable in /proc/meminfo") if value is not None else None
    return int(psutil.virtual_memory().available), "psutil.virtual_memory().available"


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None      # "max": no limit


def _inactive_file(stat: Path, key: str) -> int:
    # Page cache the kernel reclaims before it kills anything; counted in usage, but free to us.
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _ancestors(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each parent directory up to ``root`` (limits are inherited)."""
    parts = [p for p in relative.strip("/").split("/") if p]
    dirs = [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()]


def cgroup_available(proc_cgroup: str = "/proc/self/cgroup",
                     root: str = "/sys/fs/cgroup") -> Optional[tuple[int, str]]:
    """Bytes left under the tightest cgroup memory limit of this process (v2 ``memory.max`` or
    v1 ``memory.limit_in_bytes``), minus reclaimable page cache; None without a limit."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    v2_path, v1_path = None, None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    base = Path(root)
    candidates: list[tuple[Path, str, str, str, str]] = []
    if v1_path is not None and (base / "memory").is_dir():
        for d in _ancestors(base / "memory", v1_path):
            candidates.append((d, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file", "v1"))
    if (base / "memory.max").exists() or v2_path is not None:
        for d in _ancestors(base, v2_path or "/"):
            candidates.append((d, "memory.max", "memory.current", "inactive_file", "v2"))
    best: Optional[tuple[int, str]] = None
    for d, limit_name, usage_name, inactive_key, _ in candidates:
        limit = _read_int(d / limit_name)
        if limit is None or limit >= _V1_UNLIMITED:
            continue
        usage = _read_int(d / usage_name) or 0
        used = max(0, usage - _inactive_file(d / "memory.stat", inactive_key))
        left = max(0, limit - used)
        if best is None or left < best[0]:
            best = (left, f"cgroup limit {limit / 2**30:.1f} GiB in {d / limit_name}")
    return best


def ram_available() -> Optional[Budget]:
    """The RAM this process may still allocate: MemAvailable, or less under a cgroup limit."""
    found = [b for b in (_system_available(), cgroup_available()) if b is not None]
    if not found:
        return None
    value, source = min(found, key=lambda b: b[0])
    return Budget("RAM", value, source)


# ---------------------------------------------------------------------- GPUs

def _visible_to_physical(index: int) -> Optional[str]:
    """The nvidia-smi ``--id`` of CUDA device ``index`` under CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return str(index)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if index >= len(entries) or entries[index].startswith("MIG-"):
        return None      # a MIG slice's memory is not what nvidia-smi reports for the GPU
    return entries[index]


def _nvidia_smi(index: int) -> Optional[tuple[int, int]]:
    """(free, total) bytes of CUDA device ``index`` from nvidia-smi, or None."""
    exe = shutil.which("nvidia-smi")
    gpu = _visible_to_physical(index)
    if exe is None or gpu is None:
        return None
    try:
        out = subprocess.run([exe, f"--id={gpu}", "--query-gpu=memory.free,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
        free, total = (int(v) * 2**20 for v in out.stdout.strip().splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return free, total


def gpu_available(index: int, framework: str, may_start_cuda: bool = False) -> Optional[Budget]:
    """Memory left on CUDA device ``index`` for ``framework``; None when it cannot be told.

    torch: free memory plus what torch's caching allocator holds unused, from
    ``torch.cuda.mem_get_info`` when CUDA is already started here or ``may_start_cuda``; else
    nvidia-smi's free memory. TensorFlow reserves most of a GPU once it starts, so its free memory
    says nothing: the GPU's total memory is the limit.
    """
    where = f"cuda:{index}"
    if framework == "torch":
        import torch

        if torch.cuda.is_initialized() or may_start_cuda:
            try:
                free, _ = torch.cuda.mem_get_info(index)
                cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
            except (RuntimeError, AssertionError):
                return None
            return Budget(where, int(free + max(0, cached)), "free memory (torch.cuda.mem_get_info)")
    smi = _nvidia_smi(index)
    if smi is None:
        return None
    free, total = smi
    if framework == "torch":
        return Budget(where, free, "free memory (nvidia-smi)")
    return Budget(where, total, "total memory (nvidia-smi; TensorFlow reserves the GPU's memory for itself)")
