"""Shared test helpers: the one tiny-run config, the CLI as a user runs it, result snapshots, engine spies.

Test modules import these names (``from conftest import TINY, cli, make_cfg``; the refusal tests'
``TINY_RUN``, ``train_in_process``, ``tree``); pytest puts ``tests/`` on ``sys.path`` for them. Tiers
(markers in ``pyproject.toml``): a plain ``python -m pytest`` runs the unit and in-process tests (1½–3
minutes on 2 cores); ``python -m pytest -m ""`` adds the end-to-end subprocess runs (``slow``) and the
Slurm tests (``slurm``), which is what ``.ci/run`` does.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweep.hydra_setup import register

register()  # tests compose configs as sweep.train does (the run_name resolver, encoder=conv4 shorthands)

ROOT = Path(__file__).resolve().parent.parent
# the tiny settings of every test run, launched or in process: seconds-long runs
TINY = [
    "data.subset=200",
    "batch_size=50",
    "eval.iwae_k=2",
    "eval.latents_n=100",
    "eval.probe_train=200",
    "progress=false",
    "device=cpu",
]
# launched runs (subprocesses, often several at once) keep to one thread each, like the test process
LAUNCHED = [*TINY, "num_threads=1"]
# a small architecture with both layer kinds (a dense encoder, a conv decoder)
SMALL = ["encoder=dense", "encoder.width=32", "decoder=conv", "decoder.depth=2", "latent_dim=4"]
SMOKE_RUNS = {"L8_dense2_dense2_s0", "L8_dense2_conv5_s0", "L8_conv5_dense2_s0", "L8_conv5_conv5_s0"}
# columns that legitimately differ between two trainings of the same config
RUN_VOLATILE = {
    "wall_seconds",
    "started_at",
    "finished_at",
    "hostname",
    "machines",
    "git_commit",
    "git_dirty",
    "git_diff_sha256",
    "overrides",
    "results_dir",
    "torch_version",
    "python_version",
}


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One torch thread in the test process: tests compare runs trained in it (any fixed count would
    do, and ``sweep.evaluate`` re-evaluates with the process's count), the batches are tiny, and on a
    shared 2-core machine two threads stall each other's barriers far more than they help."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------- configs
def make_cfg(*overrides: str, arch: list[str] = SMALL) -> dict:
    """A composed, resolved config for a seconds-long run (one epoch of :data:`TINY`); ``overrides`` win.
    A fresh copy each call (tests change what they get), composed once per process for each argument
    list: a composition is ~0.1 s and the suite asks for the same config many times."""
    return copy.deepcopy(_composed(tuple(arch), overrides))


@functools.cache
def _composed(arch: tuple[str, ...], overrides: tuple[str, ...]) -> dict:
    from hydra import compose, initialize_config_dir

    from sweep.config import CONF_DIR, to_plain

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*arch, "epochs=1", *TINY, *overrides])
    return to_plain(cfg)


def kl_tolerance(kl: float, latent_dim: int, rel: float) -> float:
    """An absolute tolerance for a KL (nats per image, summed over ``latent_dim`` dimensions) computed two
    ways that round differently: ``rel`` times a bound on the magnitude of the terms summed, not the KL.

    Each KL_d = ½(μ² + σ² − 1 − log σ²) is a difference of O(1) numbers (σ² ≈ 1 near the prior), so its
    rounding errs relative to the magnitude ½(μ² + σ² + 1 + |log σ²|), which can be a hundred times the
    KL itself (early in training). That magnitude is KL_d + 1 + max(t, 0) with t = log σ², and for t ≥ 0
    t ≤ (eᵗ − 1 − t) + ½ (since eᵗ − 1 − t ≥ t²/2 ≥ t − ½) ≤ 2·KL_d + ½: so it is at most 3·KL_d + 3/2,
    and summed over the dimensions (and averaged over images) at most 3·KL + 1.5·latent_dim."""
    return rel * (3 * kl + 1.5 * latent_dim)


# ---------------------------------------------------------------------------------------- the CLI
def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "CI": "true", "HYDRA_FULL_ERROR": "0"}
    out.pop("VAE_SWEEP_KILL_AT", None)  # the test hooks only where a test sets them
    out.pop("VAE_SWEEP_HOLD_AT", None)
    return {**out, **extra}


def cli(*args: str, timeout: int = 600, cwd: Path = ROOT, **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` as a user runs it, from the repository root (or ``cwd``)."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def launch(*args: str, **extra_env: str) -> subprocess.Popen:
    """``python -m <args>`` started in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_error_line(text: str) -> str:
    """The one line a refusal prints (stdout and stderr together): asserts there is exactly one and that
    it is an ``error:`` line; returns it for the test's needles."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines[-20:]
    return lines[0]


def trained(out: str) -> list[str]:
    """Run names a launch's stdout says it trained to the end (status ok)."""
    return [line.split(":")[0] for line in out.splitlines() if ": ok; results in" in line]


# ---------------------------------------------------------------------------------------- results
def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file below ``root`` (names in ``skip`` left out)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def results_of(sweep_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """The deterministic content of every run below ``sweep_dir``: run.parquet without timing and
    provenance, epochs.parquet without ``seconds``, eval.parquet without ``eval/seconds``, dims."""
    out = {}
    for run in sorted(p.parent for p in Path(sweep_dir).glob("*/run.parquet")):
        run_t = pq.read_table(run / "run.parquet").to_pandas()
        out[run.name] = {
            "run": run_t.drop(columns=[c for c in run_t.columns if c in RUN_VOLATILE]),
            "epochs": pq.read_table(run / "epochs.parquet").to_pandas().drop(columns="seconds"),
            "eval": pq.read_table(run / "eval.parquet").to_pandas().drop(columns="eval/seconds"),
            "dims": pq.read_table(run / "dims.parquet").to_pandas(),
        }
    return out


def assert_same_results(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        for table in a[name]:
            pd.testing.assert_frame_equal(a[name][table], b[name][table], obj=f"{name}/{table}")


# ---------------------------------------------------------------------------------------- engine spies
def interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Make the engine raise KeyboardInterrupt (like Ctrl-C, not caught, not recorded) as it starts
    training ``epoch`` (0-based) of any cohort."""
    import sweep.slot as slot_mod

    real = slot_mod.train_epoch

    def interrupted(cohort, e):
        if e == epoch:
            raise KeyboardInterrupt
        return real(cohort, e)

    monkeypatch.setattr(slot_mod, "train_epoch", interrupted)


def spy_epochs(monkeypatch) -> list[tuple[int, int]]:
    """Record (cohort size, epoch) of every epoch the engine trains; returns the growing list."""
    import sweep.slot as slot_mod

    real, seen = slot_mod.train_epoch, []
    monkeypatch.setattr(slot_mod, "train_epoch", lambda c, e: seen.append((c.size, e)) or real(c, e))
    return seen


# ------------------------------------------------------------- the refusal tests' seconds-long runs
# a search trial that trains in about a second: 64 images, one epoch, nothing logged
TINY_SEARCH = [
    "epochs=1",
    "data.subset=64",
    "data.val_size=64",
    "batch_size=32",
    "eval.iwae_k=2",
    "eval.latents_n=32",
    "eval.probe_train=64",
    "eval.fid_samples=16",
    "eval.kid_subset_size=8",
    "eval.kid_subsets=2",
    "logger=none",
    "progress=false",
    "device=cpu",
    "num_threads=1",
    "search.pruner=none",
    # dense1/dense1 only: every trial differs in latent_dim, lr and beta alone
    "search.space.encoder.choices=[dense1]",
    "search.space.decoder.choices=[dense1]",
    "search.space.latent_dim.choices=[2,4]",
]
# a run of the same seconds-long settings
TINY_RUN = [
    "encoder=dense1",
    "decoder=dense1",
    "latent_dim=2",
    *(o for o in TINY_SEARCH if not o.startswith("search.")),
]


def search_args(tmp_path, *more: str, experiment: str = "search_arch") -> list[str]:
    return [f"experiment={experiment}", f"results_dir={tmp_path}", *TINY_SEARCH, *more]


def train_in_process(monkeypatch, *args: str) -> int:
    """``python -m sweep.train <args>`` in this process (Hydra's basic launcher runs a multirun's jobs
    here too, so a test can inject a fault); returns its exit status."""
    from hydra.core.global_hydra import GlobalHydra

    import sweep.train as train_mod

    monkeypatch.setattr(sys, "argv", ["sweep.train", *args])
    GlobalHydra.instance().clear()
    try:
        train_mod.cli()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    return 0


def tree(root: Path) -> dict:
    """Every entry below ``root``, directories too (a refusal must not leave an empty sweeps/)."""
    return {**snapshot(root), "dirs": sorted(str(p) for p in root.rglob("*") if p.is_dir())}


def two_run_sweep(root: Path) -> Path:
    """A fake sweep of two runs (seeds 0 and 1 of L25_dense1_dense1)."""
    from synthetic import make_sweep

    return make_sweep(root, seeds=(0, 1), latents=(25,), encoders=("dense1",), decoders=("dense1",))


# ---------------------------------------------------------------------------------------- tiers
def tiered(cases: list[tuple], ids: list[str], default: set[str]) -> list:
    """A parametrize table whose cases named in ``default`` run in the default tier and the others in
    the full tier (marked ``slow``): for tables of subprocess cases where a few show the path works
    and the rest add only their messages."""
    unknown = default - set(ids)
    assert not unknown, f"no such case: {sorted(unknown)}"
    return [
        pytest.param(*case, id=i, marks=() if i in default else pytest.mark.slow)
        for case, i in zip(cases, ids, strict=True)
    ]


def written_numbers(text: str) -> list[tuple[float, float]]:
    """Each number written in ``text`` (``−`` or ``-`` signed, thousands commas dropped) with half a unit
    of its last digit: what a prose number stands for."""
    found = re.findall(r"[−+-]?\d+(?:\.\d+)?", text.replace(",", ""))
    return [(float(x.replace("−", "-")), 0.5 * 10.0 ** -len((x.split(".") + [""])[1])) for x in found]


def states_in_order(text: str, want: list) -> int | None:
    """The index of the first of ``want`` that ``text`` does not write after the one before it (None: it
    writes them all, in order), each to the precision written: a count (int) as an integer, any other value
    with its decimals (an integer token is 0.5 wide and would match almost anything)."""
    at = iter(written_numbers(text))
    for k, value in enumerate(want):
        integer = isinstance(value, int)
        if not any(abs(x - value) <= half and (half == 0.5) == integer for x, half in at):
            return k
    return None
