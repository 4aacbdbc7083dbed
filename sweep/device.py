"""Where a run computes: the device a config names, the float32 matmul mode on CUDA, the CPU threads.

Used by every entry point that puts a model on a device (training, re-evaluation, benchmarks), so they
pick ``device: auto`` and set TF32 the same way.
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA where there is one, else MPS, else the CPU; any other name as torch parses it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


@contextlib.contextmanager
def tf32_on_cuda(device: torch.device, enabled: bool = True):
    """TF32 matmuls and convolutions on CUDA (training and evaluation), or with ``enabled=False`` plain
    float32 for both; the previous flags come back afterwards. Elsewhere a no-op. The flags are
    process-wide, so the engine sets them once per launch."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """torch's intra-op CPU threads set to ``n`` (None or 0: left as they are); the previous count comes
    back afterwards, since the jobs of one launch share a process and one's count must not leak into
    the next."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
