"""README's hand-written paragraphs on the committed results say what the reports say: every number of
each is recomputed from the committed tables and must be written, to its written precision, in order.
(README's generated table of conditions is tested in tests/test_slim.py with the reports it reads.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import states_in_order

ROOT = Path(__file__).resolve().parent.parent
REPRODUCE = ROOT / "results" / "examples" / "reproduce"
E30 = REPRODUCE.parent / "reproduce_e30"


def _settles(verdicts: pd.Series) -> int:
    """The first epoch from which a claim's verdict (indexed by epoch) holds to the last."""
    last = verdicts.iloc[-1]
    changed = verdicts.index[verdicts.ne(last)]
    return int(changed.max() + 1) if len(changed) else int(verdicts.index.min())


@pytest.mark.skipif(not (E30 / "claims.csv").is_file(), reason="no committed 30-epoch report yet")
def test_readme_s_30_epoch_paragraph_states_its_reports_numbers_in_order():
    """README's paragraph on the 30-epoch condition writes numbers copied by hand from its report: each is
    recomputed here from the committed tables (claims, rank stability, still improving, verdicts per
    epoch, runs; the 10-epoch baseline from the reproduction's seed 0) and must be written, to the
    precision written, in the paragraph's order."""
    claims = pd.read_csv(E30 / "claims.csv").query("decides").set_index("claim")
    seed0 = pd.read_csv(REPRODUCE / "seed0" / "claims.csv").query("decides").set_index("claim")
    rank = pd.read_csv(E30 / "rank_stability.csv")
    still = pd.read_csv(E30 / "still_improving.csv")
    budget = pd.read_csv(E30 / "claims_budget.csv").query("split == 'val'")
    settles = {c: _settles(b.set_index("epoch")["verdict"]) for c, b in budget.groupby("claim")}
    e30 = pd.read_csv(E30 / "runs.csv").set_index("label")
    e10 = pd.read_csv(REPRODUCE / "runs.csv").query("seed == 0").set_index("label").reindex(e30.index)
    gain = {m: e10[f"test/{m}"] - e30[f"test/{m}"] for m in ("neg_elbo", "distortion")}

    def overall(criterion):
        row = rank[rank.criterion.eq(criterion) & rank.group.eq("all")].iloc[0]
        return [row.rho, row.ci_low, row.ci_high]

    def within(criterion):
        rho = rank[rank.criterion.eq(criterion) & rank.group.ne("all")].rho
        return [rho.min(), rho.max()]

    def row(claim, sign=1.0):
        return [sign * claims.at[claim, "statistic"], *sorted(sign * claims.loc[claim, ["ci_low", "ci_high"]])]

    want = [
        gain["neg_elbo"].median(), gain["neg_elbo"].min(), gain["neg_elbo"].max(),
        gain["distortion"].median(), gain["distortion"].min(), gain["distortion"].max(),
        gain["distortion"][e30["family/decoder"].eq("dense4")].median(),
        *overall("distortion"), *overall("neg_elbo"), *within("distortion"), *within("neg_elbo"),
        *row("C5a"), seed0.at["C5a", "statistic"], *row("C4", -1.0), -seed0.at["C4", "statistic"],
        *row("C5b"), seed0.at["C5b", "statistic"],
        settles["C1"], settles["C5b"], settles["C3"],
        int(still.still_improving.sum()), len(still), int(budget.epoch.max()), still.gain.median(),
        e30["test/distortion"].min(), e30["test/iwae_nll"].min(),
    ]  # fmt: skip
    assert settles["C1"] == settles["C4"] == settles["C5a"]  # "C1, C4 and C5a at epoch 1"
    _states_in_order("**Trained three times longer", want)


def _states_in_order(opening: str, want: list) -> None:
    """README's paragraph that opens with ``opening`` writes each of ``want`` in turn (:func:`states_in_order`)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(opening)
    missing = states_in_order(readme[start : readme.index("\n\n", start)], want)
    assert missing is None, f"README's paragraph {opening!r} lacks value {missing} of its report's, {want[missing]:.4g}"


CAPACITY = REPRODUCE.parent / "capacity_matched"


@pytest.mark.skipif(not (CAPACITY / "claims.csv").is_file(), reason="no committed capacity-matched report")
def test_readme_s_capacity_matched_paragraph_states_its_reports_numbers_in_order():
    """The same for README's paragraph on the capacity-matched grid, against its claims.csv and the
    reproduction's seed 0 (the bracketed baseline); the dense1 widths from its runs. Written by hand when
    the grid completed, three of its numbers went stale as later changes to the tests moved them by
    Monte Carlo error (a Holm p of a lift, an interval's end); this keeps them the report's."""
    cap, seed0 = (pd.read_csv(d / "claims.csv") for d in (CAPACITY, REPRODUCE / "seed0"))
    runs = pd.read_csv(CAPACITY / "runs.csv")

    def row(table, part, metric="test/distortion", sign=1.0, cols=("statistic", "ci_low", "ci_high")):
        r = table[table.part.eq(part) & table.metric.eq(metric)].iloc[0]
        values = [sign * r[c] for c in cols]
        return [values[0], *sorted(values[1:])] if len(values) == 3 else values

    dense1 = runs.loc[runs["family/encoder"].eq("dense1"), "encoder.width"]
    deep = "conv2+conv4 vs conv1"
    want = [
        int(dense1.min()), int(dense1.max()),
        *row(cap, "dense1 vs conv2", sign=-1), *row(seed0, "dense1 vs conv2", sign=-1, cols=["statistic"]),
        *row(cap, "dense1 vs conv1", sign=-1), *row(seed0, "dense1 vs conv1", sign=-1, cols=["statistic"]),
        *row(cap, "dense1 vs dense4"), *row(seed0, "dense1 vs dense4", cols=["statistic"]),
        *row(seed0, "dense1 vs conv4", sign=-1, cols=["statistic"]), *row(cap, "dense1 vs conv4"),
        *row(cap, "conv1+conv2+conv4 vs dense"), *row(seed0, "conv1+conv2+conv4 vs dense", cols=["statistic"]),
        *row(cap, deep, sign=-1), *row(seed0, deep, sign=-1, cols=["statistic"]),
        *row(cap, deep, "test/neg_elbo"), *row(seed0, deep, "test/neg_elbo", cols=["statistic"]),
        *row(cap.query("claim == 'C5b'"), "lift in the top 25%"),
        *row(cap.query("claim == 'C5b'"), "lift in the top 25%", cols=["p_holm"]),
        *row(seed0.query("claim == 'C5b'"), "lift in the top 25%", cols=["statistic", "p_holm"]),
        *row(cap, "silhouette of the 2-D PCA projection", "latent/pca_silhouette"),
        *row(seed0, "silhouette of the 2-D PCA projection", "latent/pca_silhouette", cols=["statistic"]),
        *row(cap, "silhouette of the 2-D PCA projection", "latent/pca_silhouette", cols=["p_value", "p_holm"]),
    ]  # fmt: skip
    _states_in_order("**Capacity matched, every deciding verdict stays", want)


@pytest.mark.skipif(not (REPRODUCE / "claims.csv").is_file(), reason="no committed reproduction report yet")
def test_readme_s_paragraphs_on_the_reproduction_state_its_reports_numbers_in_order():
    """The same for README's hand-written lines on the reproduction: why verdicts changed (its claims.csv;
    the earlier per-seed analysis's numbers, not in any report now, are passed over) and its verdicts
    against the training budget (claims_budget.csv, still_improving.csv, capacity.csv), and what else the
    sweep says (seed_aggregates.csv: the best reconstructions and the best and worst likelihoods)."""
    claims = pd.read_csv(REPRODUCE / "claims.csv")

    def row(part, metric="test/distortion", cols=("statistic", "ci_low", "ci_high")):
        return [claims[claims.part.eq(part) & claims.metric.eq(metric)].iloc[0][c] for c in cols]

    lift = claims.query("claim == 'C5b' and part == 'lift in the top 25%'").iloc[0]
    deep = "conv2+conv4 vs conv1"
    _states_in_order("Why verdicts changed", [
        *row("rho in the top set", "test/rate", ["p_value"]),
        *row("dense1 vs dense4"), *(row(f"dense1 vs {f}", cols=["statistic"])[0] for f in ("conv1", "conv2", "conv4")),
        *row(deep, "test/neg_elbo"), *row(deep, "test/iwae_nll", ["statistic"]),
        lift.statistic, lift.ci_low, lift.ci_high, lift.p_value, lift.p_holm, lift.p_holm_mc_low, lift.p_holm_mc_high,
        *row("kNN accuracy", "latent/knn_acc", ["statistic", "ci_low", "ci_high", "p_value"]),
        *row("silhouette of the 2-D PCA projection", "latent/pca_silhouette",
             ["statistic", "ci_low", "ci_high", "p_value", "p_holm"]),
    ])  # fmt: skip
    budget = pd.read_csv(REPRODUCE / "claims_budget.csv").query("split == 'val'")
    settles = {c: _settles(b.set_index("epoch")["verdict"]) for c, b in budget.groupby("claim")}
    c5b = budget[budget.claim.eq("C5b") & budget.epoch.lt(settles["C5b"])]
    assert settles["C1"] == settles["C4"] == settles["C5a"] and settles["C3"] == settles["C5b"]
    assert c5b.verdict.eq("reproduced").all()  # "C5b is reproduced at epochs 1–2"
    closed = budget[budget.claim.eq("C5b") & budget.statistic.le(0)].epoch.min()  # "the gap closes by"
    still = pd.read_csv(REPRODUCE / "still_improving.csv")
    r2 = pd.read_csv(REPRODUCE / "capacity.csv").query("quantity.str.startswith('R²')", engine="python").r2
    _states_in_order("Against the training budget", [
        int(budget.epoch.max()), settles["C1"], settles["C3"], int(c5b.epoch.min()), int(c5b.epoch.max()),
        float(c5b.statistic.mean()), int(closed), int(still.still_improving.sum()), int(budget.epoch.max()),
        float(r2.min()),
    ])  # fmt: skip
    means = pd.read_csv(REPRODUCE / "seed_aggregates.csv").set_index("config")
    recon, iwae = means["test/distortion/mean"].sort_values(), means["test/iwae_nll/mean"].sort_values()
    _states_in_order("What else the sweep says", [
        recon.iloc[0], recon.iloc[1], iwae.iloc[0], iwae.iloc[-2], iwae.iloc[-1],
    ])  # fmt: skip


FASHION = REPRODUCE.parent / "reproduce_fashion_mnist"


@pytest.mark.skipif(not (FASHION / "claims.csv").is_file(), reason="no committed Fashion-MNIST report yet")
def test_readme_s_fashion_mnist_paragraph_states_its_reports_numbers_in_order():
    """The same for README's paragraph on the Fashion-MNIST condition, against its report (claims, runs),
    the reproduction's seed 0 (the bracketed baseline: the same configurations, seed and schedule on
    MNIST), the ranking's carry-over (analysis.transfer, as README's table computes it) and the sweep's
    measured cost (bench/results/sweep_cost.json)."""
    import json

    from analysis import conditions, transfer

    fm, seed0 = (pd.read_csv(d / "claims.csv") for d in (FASHION, REPRODUCE / "seed0"))
    fm_runs, seed0_runs = pd.read_csv(FASHION / "runs.csv"), pd.read_csv(REPRODUCE / "seed0" / "runs.csv")

    def row(table, part, metric="test/distortion", sign=1.0, cols=("statistic", "ci_low", "ci_high")):
        r = table[table.part.eq(part) & table.metric.eq(metric)].iloc[0]
        values = [sign * r[c] for c in cols]
        return [values[0], *sorted(values[1:3]), *values[3:]] if len(values) >= 3 else values

    def decider(table, claim, sign=1.0, cols=("statistic", "ci_low", "ci_high")):
        r = table[table.claim.eq(claim) & table.decides].iloc[0]
        return row(table, r.part, r.metric, sign, cols)

    sep = conditions._SEPARABLE.search(fm[fm.claim.eq("C6") & fm.decides].why.iloc[0])
    base, other = transfer.config_values(seed0_runs), transfer.config_values(fm_runs)
    by = {crit: transfer.compare(base, other, metric) for crit, metric in transfer.CRITERIA.items()}
    cost = json.loads((ROOT / "bench" / "results" / "sweep_cost.json").read_text())
    cost = next(s for s in cost["sweeps"] if s["sweep"].endswith("reproduce_fashion_mnist"))
    assert cost["complete_runs"] == cost["grid_runs"]  # the cost of the whole sweep, not of a part
    deep = "conv2+conv4 vs conv1"
    want = [
        fm_runs["test/neg_elbo"].median(), seed0_runs["test/neg_elbo"].median(),
        fm_runs["test/distortion"].median(), seed0_runs["test/distortion"].median(),
        *decider(fm, "C5a"), *decider(seed0, "C5a", cols=["statistic"]),
        *decider(fm, "C4", -1.0), *decider(seed0, "C4", -1.0, cols=["statistic"]),
        *decider(fm, "C5b"), *decider(seed0, "C5b", cols=["statistic"]),
        *row(fm, deep, "test/neg_elbo"), *row(seed0, deep, "test/neg_elbo", cols=["statistic"]),
        *decider(fm, "C6", cols=["statistic", "ci_low", "ci_high", "p_value"]),
        *decider(seed0, "C6", cols=["statistic"]),
        float(sep.group(2)), float(sep.group(3)), float(sep.group(4)), float(sep.group(5)),
        by["distortion"]["rho"], by["distortion"]["ci_low"], by["distortion"]["ci_high"], by["−ELBO"]["rho"],
        int(by["distortion"]["top_kept"]), int(by["distortion"]["top_k"]),
        cost["summed_hours"], cost["hours_on_workers"], cost["ratio_to_baseline"]["median"],
    ]  # fmt: skip
    _states_in_order("**On Fashion-MNIST", want)


DESIGN = REPRODUCE.parent / "design"


@pytest.mark.skipif(not (DESIGN / "design.csv").is_file(), reason="no committed design report yet")
def test_readme_s_design_paragraph_states_its_reports_numbers_in_order():
    """The same for README's paragraph on the design grid, against its report (design.csv's rows: the
    Holm family, the −ELBO rows beside it, dense1's rank, the per-norm decoder gaps, the error σ̂), its
    runs (the decoder means per norm), the bracket of σ the protocol stated before the grid trained
    (analysis.design_power on the reproduction) with the gaps detectable at it and at σ̂, and the grid's
    measured cost (bench/results/sweep_cost.json)."""
    import json

    from analysis import design, design_power
    from analysis.claim_stats import ALPHA

    table, runs = pd.read_csv(DESIGN / "design.csv"), pd.read_csv(DESIGN / "runs.csv")

    def row(part, metric=design.DECIDING_METRIC, sign=1.0, cols=("statistic", "ci_low", "ci_high"), **where):
        t = table[table.part.eq(part) & table.metric.eq(metric)]
        for k, v in where.items():
            t = t[t[k].eq(v)]
        t = t if where else t[t.role.ne("descriptive")]  # by default the Holm family's row or its −ELBO twin
        r = t.iloc[0]
        values = [sign * r[c] for c in cols]
        return [values[0], *sorted(values[1:3]), *values[3:]] if len(values) >= 3 else values

    fam = table[table.decides.astype(bool)]
    drops = pd.read_csv(DESIGN / "design_sensitivity.csv").set_index("part")
    marginal = ["decoder gap conv2 − dense1, batch − none", "decoder gap to dense1, res2 − conv2"]
    assert len(fam) == 10 and fam.df_den.eq(8).all()  # "the ten questions", "on 8 df"
    enc_gap, dec_gap = "dense1's encoder gap, {} − none", "decoder gap conv2 − dense1, {} − none"
    rank = table[table.test.eq("rank") & table.norm.eq(design.ALL)].iloc[0]
    norm_changes = fam[fam.part.isin([enc_gap.format(n) for n in ("batch", "layer")])]
    dec = runs.assign(norm=design.norm_of(runs)).groupby(["norm", "family/decoder"])["test/distortion"].mean()
    sd = table[table.test.eq("error sd") & table.metric.eq(design.DECIDING_METRIC)].iloc[0]
    bracket = design_power.sigmas(pd.read_csv(REPRODUCE / "runs.csv"))
    factors = design_power.se_factors()

    def detectable(sigma, kinds):  # the Holm worst case (each question at ALPHA / 10) over these rows
        f = factors[factors.part.isin(kinds)]
        holm = ALPHA / len(factors)
        return [design_power.detectable(sigma * x, d, holm) for x, d in zip(f.se_factor, f.df, strict=True)]

    direction = list(factors.part[factors.kind.eq(design.DIRECTION)]) + [
        "dense1's encoder gap, to res2 − to conv2", "decoder gap to dense1, res2 − conv2"]  # fmt: skip
    groups = (direction, *([gap.format(n) for n in ("batch", "layer")] for gap in (enc_gap, dec_gap)))
    at_sd = [max(detectable(sd.statistic, g)) for g in groups]
    ends = ((bracket["seed noise"], min), (bracket["interaction"], max))  # the bracket's two ends
    stated = [f(detectable(s, g)) for g in groups for s, f in ends]
    cost = json.loads((ROOT / "bench" / "results" / "sweep_cost.json").read_text())
    cost = next(s for s in cost["sweeps"] if s["sweep"].endswith("design"))
    assert cost["complete_runs"] == cost["grid_runs"] == len(runs) == 27
    want = [
        *row("encoder dense1 − conv2"), *row("encoder dense1 − conv2", cols=["p_holm"]),
        *row("encoder dense1 − res2"),
        int(round(rank.statistic * rank.n_units)), int(rank.n_units),
        *row(enc_gap.format("batch")), *row(enc_gap.format("layer")),
        float(norm_changes[["ci_low", "ci_high"]].abs().max().max()),
        *row("dense1's encoder gap, to res2 − to conv2", cols=["statistic", "ci_low", "ci_high", "p_holm"]),
        *row("decoder conv2 − dense1", sign=-1), *row("decoder res2 − dense1", sign=-1),
        *row(dec_gap.format("batch"), cols=["statistic", "ci_low", "ci_high", "p_holm"]),
        *row("decoder conv2 − dense1", sign=-1, cols=["statistic"], norm="none", test="contrast"),
        *row("decoder conv2 − dense1", sign=-1, cols=["statistic"], norm="batch", test="contrast"),
        dec["none", "dense1"] - dec["batch", "dense1"], dec["batch", "conv2"] - dec["none", "conv2"],
        *row(dec_gap.format("layer")),
        *row(dec_gap.format("batch"), "test/neg_elbo"), *row(dec_gap.format("layer"), "test/neg_elbo"),
        *row("decoder gap to dense1, res2 − conv2", sign=-1),
        *row("decoder gap to dense1, res2 − conv2", cols=["p_holm"]),
        int(drops.drops.max()), *(int(drops.at[p, "kept"]) for p in marginal), int(drops.drops.max()),
        *drops.loc[marginal[0], ["drop_low", "drop_high"]],
        *sorted(-drops.loc[marginal[1], ["drop_low", "drop_high"]]),
        sd.statistic, sd.ci_low, sd.ci_high, int(sd.df_den), bracket["seed noise"], bracket["interaction"],
        *at_sd, *stated,
        cost["summed_hours"], cost["hours_on_workers"],
    ]  # fmt: skip
    assert set(drops.index[drops.kept.lt(drops.drops)]) == set(marginal) and drops.drops.eq(27).all()
    tiny = ["encoder dense1 − res2", "decoder conv2 − dense1", "decoder res2 − dense1"]
    assert fam[fam.part.isin(tiny)].p_holm.lt(1e-4).all()  # "Holm p < 0.0001"
    _states_in_order("**Design choices", want)
