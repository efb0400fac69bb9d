"""Which GPUs each installed framework sees, and what mixed precision will do there.

The first answers to "training is slow": is it on the GPU, how many GPUs are visible, and does
mixed precision apply. Importing this module imports no framework; :func:`device_report` imports each
installed one (TensorFlow takes seconds), so call it when the answer is wanted.
"""
from __future__ import annotations

import os
from typing import Any

_INSTALL = {"torch": "pip install torch", "tensorflow": "pip install tensorflow-cpu (or tensorflow[and-cuda] for GPUs)"}


def _torch_report() -> dict[str, Any]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if gpus:
        mp = ("bfloat16 autocast" if torch.cuda.is_bf16_supported()
              else "float16 autocast with loss scaling (this GPU lacks bfloat16)")
    else:
        mp = "bfloat16 autocast on the CPU (runs; speed-ups need CPU bfloat16 instructions)"
    notes = []
    if not gpus:
        notes.append("a CPU-only build of torch" if torch.version.cuda is None and torch.version.hip is None
                     else "a CUDA build, but no GPU is visible (driver, CUDA_VISIBLE_DEVICES?)")
    return {"installed": True, "version": torch.__version__, "gpus": gpus, "mixed_precision": mp, "notes": notes}


def _tensorflow_report() -> dict[str, Any]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    gpus, fast_fp16 = [], []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
        fast_fp16.append(tuple(details.get("compute_capability", (0, 0))) >= (7, 0))
    if gpus:
        mp = ("mixed_float16 policy (Tensor Cores: faster)" if all(fast_fp16)
              else "mixed_float16 policy (runs; GPUs below compute capability 7.0 gain little)")
    else:
        mp = "mixed_float16 policy on the CPU (runs, usually slower than float32)"
    notes = []
    if not gpus:
        notes.append("a CPU-only build of TensorFlow" if not tf.test.is_built_with_cuda()
                     else "a CUDA build, but no GPU is visible (driver, CUDA_VISIBLE_DEVICES?)")
    return {"installed": True, "version": tf.__version__, "gpus": gpus, "mixed_precision": mp, "notes": notes}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def device_report() -> dict[str, dict[str, Any]]:
    """Per backend ("torch", "tensorflow"): installed, version, gpus (names), mixed_precision
    (what ``mixed_precision=True`` does there), notes; or how to install a missing framework."""
    report: dict[str, dict[str, Any]] = {}
    for name, probe in (("torch", _torch_report), ("tensorflow", _tensorflow_report)):
        try:
            report[name] = probe()
        except ImportError as exc:
            report[name] = {"installed": False, "gpus": [], "install": _INSTALL[name],
                            **({"error": f"{type(exc).__name__}: {exc}"} if exc.name != name else {})}
        except Exception as exc:  # a broken install is reported, not raised
            report[name] = {"installed": False, "gpus": [], "error": f"{type(exc).__name__}: {exc}",
                            "install": _INSTALL[name]}
    return report


def format_device_report(report: dict[str, dict[str, Any]]) -> str:
    """One line per backend, e.g. ``torch 2.13.0: no GPU (a CPU-only build of torch); mixed precision: ...``."""
    lines = []
    for name, info in report.items():
        if not info.get("installed"):
            why = info.get("error", "not installed")
            lines.append(f"{name}: {why}; install with: {info['install']}")
            continue
        gpus = info["gpus"]
        seen = f"{len(gpus)} GPU(s): {', '.join(gpus)}" if gpus else "no GPU"
        if info["notes"]:
            seen += f" ({'; '.join(info['notes'])})"
        lines.append(f"{name} {info['version']}: {seen}; mixed precision: {info['mixed_precision']}")
    return "\n".join(lines)
