"""vae-sweep analysis package: reads stored results only (never retrains, never loads a model).

Importing it first pins OpenBLAS's kernel (:func:`pin_blas_kernel`) so that a report regenerates
byte for byte on any x86 CPU: the capacity model's least squares (analysis/capacity.py) carry the
kernel's rounding into the last digits of its CSV (measured: up to 5e-7 relative on a p-value of the
capacity-matched grid, whose capacity slopes are nearly unidentified), and OpenBLAS picks its kernel
by CPU (Intel and AMD machines of this project differ)."""

import os
import sys
from pathlib import Path

from sweep.provenance import cpu_info  # no numpy: the pin must come before it loads

BLAS_KERNEL = "Haswell"  # AVX2 + FMA: every x86-64 CPU of the last decade runs it, AVX-512 ones included
KERNEL_NEEDS = frozenset({"avx2", "fma"})


def pin_blas_kernel(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Set ``OPENBLAS_CORETYPE`` to :data:`BLAS_KERNEL` for this process (and its children) when the
    CPU has what that kernel needs; returns the kernel pinned, or None where nothing is pinned: a value
    the user set is kept, numpy already loaded (its OpenBLAS read the variable when it loaded; so the
    ``python -m analysis.<tool>`` entry points pin, an interpreter that imported numpy first does not),
    or a CPU (or an OS without /proc/cpuinfo) that cannot be shown to run the kernel."""
    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return None
    if not KERNEL_NEEDS <= set((cpu_info("flags", cpuinfo) or "").split()):
        return None
    os.environ["OPENBLAS_CORETYPE"] = BLAS_KERNEL
    return BLAS_KERNEL


pin_blas_kernel()

from sweep import one_line_ctrl_c  # noqa: E402

one_line_ctrl_c()  # python -m analysis.<tool>: an uncaught Ctrl-C is one line (sweep/__init__.py)
