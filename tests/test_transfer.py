"""How far the configurations' ranking carries over between conditions (analysis/transfer.py): Spearman's
ρ over the configurations two conditions share, its bootstrap interval, and the top-quarter overlap,
checked on planted rankings whose answer is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import transfer

FAMILIES = ("dense1", "dense4", "conv1", "conv2", "conv4")
DIST, ELBO = "test/distortion", "test/neg_elbo"


def configs(values, latents=(25, 50)) -> pd.DataFrame:
    """:func:`transfer.config_values`' shape: one row per latent × encoder × decoder, ``values`` in order."""
    index = pd.MultiIndex.from_tuples(
        list(itertools.product(latents, FAMILIES, FAMILIES)), names=["latent_dim", "family/encoder", "family/decoder"]
    )
    v = np.asarray(values, dtype=float)
    return pd.DataFrame({DIST: v, ELBO: v + 20.0}, index=index)


def test_config_values_average_the_ok_runs_of_each_configuration_of_the_chosen_seeds():
    rows = [
        {"latent_dim": 25, "family/encoder": "dense1", "family/decoder": "conv2", "seed": s, "status": st,
         DIST: d, ELBO: d + 20}
        for s, st, d in ((0, "ok", 80.0), (1, "ok", 82.0), (2, "diverged", 1e9), (3, "ok", 90.0))
    ]  # fmt: skip
    runs = pd.DataFrame(rows)
    assert transfer.config_values(runs)[DIST].tolist() == [pytest.approx(84.0)]  # (80 + 82 + 90)/3, diverged out
    assert transfer.config_values(runs, [0, 1])[DIST].tolist() == [pytest.approx(81.0)]
    assert transfer.config_values(runs, [1])[ELBO].tolist() == [pytest.approx(102.0)]


def test_the_same_ranking_keeps_every_top_configuration_and_the_reversed_one_none():
    base = configs(np.arange(50.0))
    same = transfer.compare(base, configs(np.arange(50.0) * 3 + 7), DIST)  # a monotone map: the same ranks
    assert same["rho"] == pytest.approx(1.0) and same["n_configs"] == 50
    assert (same["top_k"], same["top_kept"], same["chance"]) == (13, 13, pytest.approx(13 * 13 / 50))
    rev = transfer.compare(base, configs(-np.arange(50.0)), DIST)
    assert rev["rho"] == pytest.approx(-1.0) and rev["top_kept"] == 0


def test_rho_is_scipy_s_spearman_over_the_configurations_both_hold_with_a_finite_value():
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    other = configs(y)
    other.iloc[4, 0] = np.nan  # one configuration without a finite distortion
    other = other.drop(other.index[7])  # one the condition does not hold
    res = transfer.compare(configs(x), other, DIST)
    assert res["n_configs"] == 48
    assert res["rho"] == pytest.approx(stats.spearmanr(np.delete(x, [4, 7]), np.delete(y, [4, 7])).statistic)
    assert res["ci_low"] < res["rho"] < res["ci_high"]
    # the other criterion has every configuration the condition holds
    assert transfer.compare(configs(x), other, ELBO)["n_configs"] == 49


def test_the_interval_covers_a_planted_rank_correlation_as_often_as_it_says():
    # bivariate normal with Pearson r: its population Spearman is 6/π · asin(r/2) (Pearson 1907)
    r, n, reps = 0.7, 50, 40
    planted = 6 / math.pi * math.asin(r / 2)
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(reps):
        x, y = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=n).T
        res = transfer.compare(configs(x), configs(y), DIST)
        covered += res["ci_low"] <= planted <= res["ci_high"]
    # 95 % nominal: fewer than 33 of 40 has probability < 0.002 for a correct interval
    assert covered >= 33, covered


def test_top_quarter_ties_are_broken_by_configuration_name():
    base = configs(np.zeros(50))  # every configuration tied: the first 13 names
    top = transfer._top(base[DIST])
    names = sorted(f"L{lat}_{e}_{d}" for lat, e, d in base.index)[:13]
    assert sorted(f"L{lat}_{e}_{d}" for lat, e, d in top) == names


def test_markdown_writes_each_condition_once_pending_and_too_few_configurations_say_so():
    base = configs(np.arange(50.0))
    few = configs(np.arange(50.0)).iloc[:6]  # 6 configurations: ρ, no interval
    two = configs(np.arange(50.0)).iloc[:2]  # 2: no ρ
    odd = configs(np.arange(50.0))
    odd.iloc[:5, 1] = np.nan  # −ELBO on 45 configurations only
    rows = transfer.table(base, [
        ("seed 1", configs(np.arange(50.0)), True), ("few", few, False), ("two", two, False),
        ("odd", odd, False), ("later", None, False),
    ])  # fmt: skip
    lines = transfer.markdown(rows, "seed 0")
    body = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and "---" not in line}
    assert body["seed 1 (replicate)"] == "| seed 1 (replicate) | 50 | 1 [1, 1] | 1 [1, 1] | 13 of 13 (chance 3.38) |"
    assert "| 6 | 1 [no interval: n = 6 < 10] |" in body["few"]
    assert "undefined (n = 2 < 3)" in body["two"]
    assert "| odd | distortion: 50, −ELBO: 45 |" in body["odd"]
    assert body["later"] == "| later | pending | pending | pending | pending |"
    assert lines[0].startswith("How far the configurations' ranking carries over") and "seed 0" in lines[0]
