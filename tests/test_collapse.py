"""analysis.collapse on hand-built run tables: counts, rates and Wilson intervals by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import collapse


def table(rows: list[dict]) -> pd.DataFrame:
    defaults = {
        "status": "ok",
        "latent_dim": 25,
        "family/encoder": "dense1",
        "family/decoder": "conv4",
        "loss.reduction": "sum",
        "collapsed": False,
        "partial": False,
        "paper_collapsed": False,
    }
    return pd.DataFrame([{**defaults, "run_name": f"r{i}", **r} for i, r in enumerate(rows)])


def test_collapse_table_counts_by_hand():
    runs = table(
        [
            {"collapsed": True, "paper_collapsed": True},
            {"collapsed": True},
            {"partial": True},
            {"status": "diverged", "collapsed": None, "partial": None, "paper_collapsed": None},
            {"status": "failed", "collapsed": True},  # a stale flag on a failed run is not counted
            {"collapsed": None, "partial": None, "paper_collapsed": None},  # ok but not evaluated
            {"latent_dim": 50, "family/encoder": "conv2", "partial": True},
        ]
    )
    got = collapse.collapse_table(runs)
    assert got[["latent_dim", "family/encoder", "family/decoder"]].values.tolist() == [
        [25, "dense1", "conv4"],
        [50, "conv2", "conv4"],
    ]
    first, second = got.iloc[0], got.iloc[1]
    assert (first["n"], first["n_collapsed"], first["n_partial"], first["n_paper_collapsed"]) == (6, 2, 1, 1)
    assert first["n_not_evaluated"] == 3
    assert (second["n"], second["n_collapsed"], second["n_partial"], second["n_not_evaluated"]) == (
        1,
        0,
        1,
        0,
    )


def test_collapse_table_is_sorted_and_handles_an_empty_table():
    runs = table([{"latent_dim": 200}, {"latent_dim": 25, "family/encoder": "dense4"}, {"latent_dim": 25}])
    got = collapse.collapse_table(runs)
    assert got[["latent_dim", "family/encoder"]].values.tolist() == [
        [25, "dense1"],
        [25, "dense4"],
        [200, "dense1"],
    ]
    assert len(collapse.collapse_table(pd.DataFrame())) == 0


def test_wilson_interval_known_values():
    # 3 of 10: the textbook Wilson score interval (0.1078, 0.6032)
    low, high = collapse.wilson_interval(3, 10)
    assert (low, high) == (pytest.approx(0.1078, abs=1e-4), pytest.approx(0.6032, abs=1e-4))
    # 0 of n: closed form upper bound z² / (n + z²)
    z2 = collapse.Z95**2
    assert collapse.wilson_interval(0, 10) == (pytest.approx(0.0, abs=1e-12), pytest.approx(z2 / (10 + z2)))
    assert collapse.wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), pytest.approx(1.0))
    assert all(math.isnan(x) for x in collapse.wilson_interval(0, 0))


def test_collapse_by_factor_rates_exclude_runs_that_were_not_evaluated():
    runs = table(
        [{"loss.reduction": "paper", "collapsed": c} for c in (True, True, True, False)]
        + [{"loss.reduction": "paper", "status": "diverged", "collapsed": None}]
        + [{"loss.reduction": "sum", "collapsed": False}] * 3
    )
    got = collapse.collapse_by_factor(runs, "loss.reduction").set_index("loss.reduction")
    paper = got.loc["paper"]
    assert (paper["n"], paper["n_evaluated"], paper["n_collapsed"], paper["n_not_evaluated"]) == (5, 4, 3, 1)
    assert paper["rate"] == 0.75
    assert (paper["ci_low"], paper["ci_high"]) == collapse.wilson_interval(3, 4)
    assert got.loc["sum", "rate"] == 0.0 and got.loc["sum", "n_evaluated"] == 3
    by_paper_flag = collapse.collapse_by_factor(runs, "loss.reduction", "paper_collapsed")
    assert by_paper_flag["n_collapsed"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="flag_name"):
        collapse.collapse_by_factor(runs, "loss.reduction", "kl")
