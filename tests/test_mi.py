"""analysis.mi: every run's mutual-information estimate comes with its ceiling log N (recorded, or derived
for runs stored before it was), and estimates at the ceiling are flagged wherever the report shows them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT
from synthetic import make_sweep

from analysis import mi, report, tables
from analysis.collect import load_sweep
from sweep.metrics import mutual_information, mutual_information_ceiling

REPRODUCE = ROOT / "results" / "examples" / "reproduce"
TOL = mi.MI_CEILING_TOLERANCE
LOG_10K = math.log(10_000)

# (case, estimate, recorded ceiling, test images recorded, expected ceiling, expected flag)
ROWS = [
    ("new run at the ceiling", 9.15, LOG_10K, 10_000, LOG_10K, True),
    ("new run below it", 4.0, LOG_10K, 10_000, LOG_10K, False),
    ("new run of a 300-image subset", 5.69, math.log(300), 300, math.log(300), True),
    ("old run: N from the test images", 9.15, None, 10_000, LOG_10K, True),
    ("old run below it", 9.0, None, 10_000, LOG_10K, False),
    ("just within the tolerance", LOG_10K - 0.999 * TOL, None, 10_000, LOG_10K, True),
    ("just past it", LOG_10K - 1.001 * TOL, None, 10_000, LOG_10K, False),
    ("no estimate (not evaluated)", None, None, None, math.nan, None),
    ("nothing to derive N from", 3.0, None, None, math.nan, None),
]


@pytest.mark.parametrize("recorded_column", [True, False], ids=["with the column", "runs all older"])
def test_every_run_gets_its_ceiling_and_flag(recorded_column):
    runs = pd.DataFrame(
        {
            "run_name": [r[0] for r in ROWS],
            mi.MI: [r[1] for r in ROWS],
            mi.N_TEST: pd.array([r[3] for r in ROWS], dtype="Int64"),
        }
    )
    if recorded_column:
        runs[mi.CEILING] = [r[2] for r in ROWS]
    got = mi.with_ceiling(runs)
    np.testing.assert_allclose(got[mi.CEILING], [r[4] for r in ROWS], rtol=1e-12)
    flags = [None if pd.isna(f) else bool(f) for f in got[mi.AT_CEILING]]
    assert dict(zip(got["run_name"], flags, strict=True)) == {r[0]: r[5] for r in ROWS}
    words = mi.flag_words(got[mi.AT_CEILING]).tolist()
    assert words == ["" if r[5] is None else mi.FLAG if r[5] else "below" for r in ROWS]


def test_a_table_without_estimates_is_left_as_it_is():
    runs = pd.DataFrame({"run_name": ["a"], "test/rate": [1.0]})
    assert mi.with_ceiling(runs) is runs and mi.summary(runs) is None


def codes(n: int, latent: int, snr: float):
    """Posteriors N(x, 1) of n codes x ~ N(0, snr·I): I(x; z) = L/2·log(1 + snr) over continuous x."""
    mu = math.sqrt(snr) * torch.randn(
        (n, latent), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return mu, torch.zeros_like(mu), latent / 2 * math.log1p(snr)


@pytest.mark.parametrize(
    ("snr", "latent", "flagged"),
    [(1e4, 4, True), (1e2, 8, True), (1.0, 2, False), (0.0, 2, False)],
    ids=["informative far past log N", "rate 18 nats, log N 6.2", "0.7 nats", "nothing"],
)
def test_the_flag_says_whether_the_estimate_is_held_by_its_ceiling(snr, latent, flagged):
    """A code carrying more than log N nats is estimated at the ceiling whatever it carries (and
    flagged); one carrying far less is estimated near its true value (and not flagged)."""
    n = 500
    mu, logvar, truth = codes(n, latent, snr)
    est = mutual_information(mu, logvar, generator=torch.Generator().manual_seed(1), chunk=128)
    ceiling = mutual_information_ceiling(n)
    assert est <= ceiling + 1e-9
    assert (truth > ceiling) is flagged
    assert bool(mi.at_ceiling(pd.Series([est]), pd.Series([ceiling]))[0]) is flagged


def test_the_committed_runs_get_the_ceiling_of_their_test_set():
    """The reproduction's runs predate the column: each gets log of the test images it recorded (its
    protocol: all 10,000 MNIST test images), and no estimate lies above it."""
    runs = load_sweep(REPRODUCE).runs
    ok = runs[runs["eval/status"].eq("ok")]
    assert mi.CEILING not in pd.read_parquet(next(REPRODUCE.glob("L*/eval.parquet"))).columns
    assert len(ok) and (ok[mi.N_TEST] == 10_000).all()
    np.testing.assert_allclose(ok[mi.CEILING], LOG_10K, rtol=1e-12)
    assert (ok[mi.MI] <= ok[mi.CEILING] + 1e-9).all()
    assert ok[mi.AT_CEILING].notna().all()


def test_the_report_shows_the_ceiling_and_the_flag_beside_the_estimate(tmp_path):
    sweep = load_sweep(make_sweep(tmp_path, seeds=(0, 1), latents=(4,), collapsed_fraction=0.5))
    runs = sweep.runs
    built = tables.build_tables(runs)
    shown = report.display("runs", built["runs"]())
    cols = list(shown.columns)
    assert cols[cols.index(mi.MI) : cols.index(mi.MI) + 3] == [mi.MI, mi.CEILING, mi.AT_CEILING]
    assert set(shown[mi.AT_CEILING]) <= {mi.FLAG, "below", ""}
    agg = report.display("seed_aggregates", built["seed_aggregates"]())
    cols = list(agg.columns)
    assert cols[cols.index(mi.MI) : cols.index(mi.MI) + 3] == [mi.MI, mi.CEILING, mi.AT_CEILING]
    assert agg[mi.CEILING].str.startswith("9.21").all()
    line = mi.summary(runs)
    n_at = int(runs[mi.AT_CEILING].fillna(False).astype(bool).sum())
    n_known = int(runs[mi.AT_CEILING].notna().sum())
    assert f"{n_at} of {n_known} runs" in line and "9.210 nats" in line and mi.FLAG in line
    assert any(line in str(b) for b in report._summary_blocks(sweep))
