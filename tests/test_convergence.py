"""analysis.convergence on fake sweeps whose validation curves are planted: Spearman's ρ of the
configurations' ranks at the reference epoch and at the last one (known ranks, known ρ), the
still-improving flag on plateaued, improving and late-best curves, the "no later epoch" note of a
10-epoch sweep, and single-seed sweeps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats
from synthetic import make_sweep

from analysis import convergence, report
from analysis.collect import load_sweep
from sweep import results

SMALL = {"latents": (4, 8, 16), "encoders": ("dense1", "conv2"), "decoders": ("dense1", "conv2")}
CONFIGS = [(lat, e, d) for lat in SMALL["latents"] for e in SMALL["encoders"] for d in SMALL["decoders"]]
REF = convergence.REFERENCE_EPOCH


def planted(tmp_path, curve, *, seeds=(0,), epochs=REF + 2):
    """A fake sweep of SMALL whose run of configuration i (CONFIGS order), seed s, has validation
    (recon, KL) per epoch 1..``epochs`` from ``curve(i, s, epochs)`` (two arrays); run.parquet stores
    the checkpoint epoch (lowest validation −ELBO, first on ties) in best/epoch, as training does."""
    root = make_sweep(tmp_path, seeds=seeds, collapsed_fraction=0.0, with_epochs=False, **SMALL)
    for path in sorted(root.glob("*/run.parquet")):
        row = pq.read_table(path).to_pylist()[0]
        key = (row["latent_dim"], *(f"{row[f'{r}.kind']}{row[f'{r}.depth']}" for r in ("encoder", "decoder")))
        recon, kl = (np.asarray(v, dtype=float) for v in curve(CONFIGS.index(key), row["seed"], epochs))
        neg_elbo = recon + kl
        rows = [
            {"run_name": row["run_name"], "epoch": e + 1, "split": split, "loss": neg_elbo[e],
             "recon": recon[e], "kl": kl[e], "neg_elbo": neg_elbo[e], "seconds": 1.0, "lr": 1e-3, "beta": 1.0}
            for e in range(epochs) for split in ("train", "val")
        ]  # fmt: skip
        results.write_parquet(path.parent / "epochs.parquet", rows, results.EPOCH_COLUMNS)
        row.update({"best/epoch": int(np.argmin(neg_elbo)) + 1, "epochs_done": epochs, "epochs": epochs})
        results.write_parquet(path, [row], results.RUN_COLUMNS)
    return load_sweep(root)


def spearman(x, y) -> float:
    """Spearman's ρ from its textbook formula on ranks without ties: 1 − 6 Σd² / (n (n² − 1))."""
    d = stats.rankdata(x) - stats.rankdata(y)
    n = len(d)
    return 1 - 6 * float((d**2).sum()) / (n * (n**2 - 1))


# the configurations' distortion ranks at the last epoch (at the reference epoch: 0..11), and −ELBO ranks
ORDERS = {
    "kept": (list(range(12)), list(range(12))),
    "swapped pairs": ([1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10], list(range(11, -1, -1))),
    "shuffled": ([3, 7, 0, 5, 1, 6, 2, 4, 11, 9, 10, 8], [2, 0, 6, 1, 7, 3, 5, 4, 10, 8, 11, 9]),
}


def ranked_curve(last_rank, elbo_rank, spread: float = 0.0):
    """Configuration i: distortion 80 + i (+ one nat per epoch before the reference epoch), KL 20, up to
    the last epoch; there distortion 70 + last_rank[i] and KL such that −ELBO = 300 + 10·elbo_rank[i].
    Seeds 0 and 1 sit ±``spread`` nats (the sign alternating by configuration) around those values, so
    per-run ranks are scrambled while the seed means keep the planted ones."""

    def curve(i, seed, epochs):
        e = np.arange(1, epochs + 1)
        shift = spread * (1 if i % 2 else -1) * (1 if seed == 0 else -1)
        recon = 80.0 + i + np.maximum(REF - e, 0) + shift
        kl = np.full(epochs, 20.0)
        recon[-1] = 70.0 + last_rank[i] + shift
        kl[-1] = 300.0 + 10.0 * elbo_rank[i] - (70.0 + last_rank[i])
        return recon, kl

    return curve


@pytest.mark.parametrize("seeds", [(0,), (0, 1)], ids=["one seed", "two seeds"])
@pytest.mark.parametrize("order", list(ORDERS))
def test_known_ranks_give_known_rho(tmp_path, order, seeds):
    last_rank, elbo_rank = ORDERS[order]
    curve = ranked_curve(last_rank, elbo_rank, spread=3.5 if len(seeds) > 1 else 0.0)
    table = convergence.rank_stability(planted(tmp_path, curve, seeds=seeds))
    assert set(table["last_epoch"]) == {REF + 2} and set(table["reference_epoch"]) == {REF}
    ref = np.arange(len(CONFIGS))
    for criterion, last in (("distortion", last_rank), ("neg_elbo", elbo_rank)):
        rows = table[table["criterion"].eq(criterion)].set_index(["group", "family"])
        top = rows.loc[("all", "all")]
        assert top["rho"] == pytest.approx(spearman(ref, last), abs=1e-12)
        assert (top["n_configs"], top["n_runs"]) == (len(CONFIGS), len(CONFIGS) * len(seeds))
        assert top["ci_low"] <= top["rho"] + 1e-12 and top["rho"] <= top["ci_high"] + 1e-12
        if order == "kept":  # every resample keeps the ranks: the interval is the point
            assert (top["ci_low"], top["ci_high"]) == pytest.approx((1.0, 1.0))
        for group, position in (("family/encoder", 1), ("family/decoder", 2)):
            for family in SMALL["encoders"]:
                members = [i for i, c in enumerate(CONFIGS) if c[position] == family]
                got = rows.loc[(group, family)]
                assert got["n_configs"] == len(members) < convergence.MIN_CI_N
                want = spearman(ref[members], np.asarray(last)[members])
                assert got["rho"] == pytest.approx(want, abs=1e-12)
                # 6 configurations: a rho, no interval (a bootstrap of so few repeats the same ranks)
                assert np.isnan(got["ci_low"]) and np.isnan(got["ci_high"])
                assert got["note"] == f"no interval: too few configurations (n = 6 < {convergence.MIN_CI_N})"


def test_a_sweep_ending_at_the_reference_epoch_says_so(tmp_path):
    sweep = planted(tmp_path, ranked_curve(*ORDERS["shuffled"]), epochs=REF)
    table = convergence.rank_stability(sweep)
    assert table["criterion"].tolist() == list(convergence.CRITERIA)
    assert table["rho"].isna().all() and table["note"].str.startswith("no later epoch").all()
    assert set(table["last_epoch"]) == {REF} and set(table["n_configs"]) == {len(CONFIGS)}
    lines = convergence.summary(table, convergence.still_improving(sweep))
    assert sum("no later epoch" in line for line in lines) == 2


N = 30
LAST, GAIN = convergence.LAST_EPOCHS, convergence.MIN_GAIN


def plateau(at: int = 6, level: float = 100.0) -> np.ndarray:
    """Falling 2 nats per epoch to ``level`` at epoch ``at``, then flat 0.01-0.03 nats above it."""
    e = np.arange(1, N + 1)
    return np.where(e <= at, level + 2.0 * (at - e), level + 0.01 * (1 + e % 3))


def with_values(curve: np.ndarray, values: dict[int, float]) -> np.ndarray:
    out = curve.copy()
    for epoch, v in values.items():
        out[epoch - 1] = v
    return out


# (validation −ELBO per epoch 1..N, flagged, best epoch, which reasons)
CURVES = {
    "plateaued": (plateau(), False, 6, ""),
    "improving by 2x MIN_GAIN over the last epochs": (
        100.0 - 2 * GAIN / LAST * np.arange(1, N + 1), True, N, "best+gain",
    ),
    "best at the last epoch, small gain": (with_values(plateau(), {N: 100.0 - GAIN / 2}), True, N, "best"),
    "best at the first of the last epochs": (with_values(plateau(), {N - LAST + 1: 99.99}), True, N - LAST + 1, "best"),
    "best just before the last epochs": (with_values(plateau(), {N - LAST: 99.99}), False, N - LAST, ""),
    "falls 2x MIN_GAIN late, best long ago": (
        with_values(plateau(level=99.0), {N - LAST: 99.5 + 2 * GAIN, N: 99.5}), True, 6, "gain",
    ),
    "falls MIN_GAIN/2 late, best long ago": (
        with_values(plateau(level=99.0), {N - LAST: 99.5 + GAIN / 2, N: 99.5}), False, 6, "",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def improving(tmp_path_factory):
    """One single-seed sweep whose configuration i has curve i of CURVES (the rest: plateaued)."""
    curves = list(CURVES.values())

    def curve(i, seed, epochs):
        neg_elbo = curves[i][0] if i < len(curves) else plateau()
        return neg_elbo - 20.0, np.full(epochs, 20.0)

    sweep = planted(tmp_path_factory.mktemp("improving"), curve, epochs=N)
    table = convergence.still_improving(sweep)
    return sweep, table.set_index("config").loc[
        sweep.runs.set_index("run_name").loc[[f"L{c[0]}_{c[1]}_{c[2]}_s0" for c in CONFIGS], "label"]
    ]


@pytest.mark.parametrize("case", list(CURVES))
def test_still_improving_flags_late_best_epochs_and_late_gains(improving, case):
    _, table = improving
    neg_elbo, flagged, best, reasons = CURVES[case]
    row = table.iloc[list(CURVES).index(case)]
    assert (row["last_epoch"], row["best_epoch"], row["n_seeds"]) == (N, best, 1)
    assert row["stored_best_epochs"] == str(best)  # one seed: the run's own checkpoint epoch
    assert row["gain"] == pytest.approx(neg_elbo[N - LAST - 1] - neg_elbo[N - 1], abs=1e-9)
    assert row["val_neg_elbo"] == pytest.approx(neg_elbo[-1])
    assert bool(row["still_improving"]) is flagged
    assert ("best epoch" in row["reason"]) is ("best" in reasons)
    assert ("gained" in row["reason"]) is ("gain" in reasons)


def test_the_summary_names_the_configurations_still_improving(improving):
    sweep, table = improving
    line = convergence.summary(convergence.rank_stability(sweep), table.reset_index())[-1]
    flagged = table.index[table["still_improving"].astype(bool)].tolist()
    assert f"Still improving at epoch {N}" in line and f"{len(flagged)} of {len(CONFIGS)}" in line
    assert all(name in line for name in flagged)
    assert not any(name in line for name in table.index if name not in flagged)
    # which rule flags each, as planted; a late best epoch on a curve that gained nothing is named so
    best = sum("best" in c[3] for c in CURVES.values())
    gain = sum("gain" in c[3] for c in CURVES.values())
    flat = sum("best" in c[3] and c[0][N - LAST - 1] - c[0][N - 1] <= 0 for c in CURVES.values())
    assert best == 3 and gain == 2 and flat == 1  # the plants cover each case
    assert line.endswith(
        f" Flagged by the best epoch: {best}, by the gain: {gain}; with a late best epoch but no gain over "
        f"the last {LAST} epochs: {flat}."
    )


def test_the_configuration_is_the_unit_of_the_flag(tmp_path):
    # seed 1 ends on its best epoch (0.1 nats below its plateau), seed 0 rises 0.2 at the end: one run
    # is flagged, their mean curve (the configuration) is not
    def curve(i, seed, epochs):
        neg_elbo = with_values(plateau(), {N: 100.2 if seed == 0 else 99.9})
        return neg_elbo - 20.0, np.full(epochs, 20.0)

    table = convergence.still_improving(planted(tmp_path, curve, seeds=(0, 1), epochs=N))
    assert len(table) == len(CONFIGS) and set(table["n_seeds"]) == {2}
    assert set(table["best_epoch"]) == {6} and set(table["stored_best_epochs"]) == {f"6, {N}"}
    assert not table["still_improving"].any()


def test_the_report_block_follows_the_budget_verdicts(improving):
    sweep, table = improving
    tables = {"rank_stability": convergence.rank_stability(sweep), "still_improving": table.reset_index()}
    blocks = report._convergence_blocks(tables)
    assert blocks[0] == ("h3", "Convergence") and blocks[-1][0] == "ul"
    assert blocks[-1][1] == convergence.summary(tables["rank_stability"], tables["still_improving"])
    assert report._convergence_blocks({}) == []


def test_an_undefined_gain_is_not_counted_as_no_gain():
    """A record shorter than the window has no gain (NaN): a late best epoch there is not "no gain"."""
    rows = pd.DataFrame({
        "arm": "all", "config": ["a", "b"], "family/encoder": "dense1", "family/decoder": "conv2",
        "last_epoch": 2, "best_epoch": 2, "gain": [math.nan, -0.5], "still_improving": True,
    })  # fmt: skip
    line = convergence.summary(pd.DataFrame(columns=convergence.STABILITY_COLUMNS), rows)[-1]
    assert line.endswith("Flagged by the best epoch: 2, by the gain: 0; with a late best epoch but no gain over the last 3 epochs: 1.")
