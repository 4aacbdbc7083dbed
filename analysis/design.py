"""Design choices (docs/protocol.md "Design choices"): does the reproduction's picture of encoders and
decoders (claims C4 and C5a) survive normalisation layers and residual blocks? The analysis of
``experiment=design``: latent 50 × encoders {dense1, conv2, res2} × decoders {dense1, conv2, res2} ×
norm {none, batch, layer} (the same norm on both sides), one seed, 27 configurations.

**The unit is the configuration** (``analysis.units``: its seeds averaged), one per cell encoder ×
decoder × norm. Response: distortion, the measure the claims decide with (``arch_claims.DECIDING_METRIC``);
−ELBO gives supporting rows.

* **Interactions** (deciding): OLS (statsmodels formula API) of ``FORMULA`` on the cells. With one
  configuration per cell the model leaves the encoder × decoder × norm interaction as the error term
  (8 df in the full grid); type II ``anova_lm`` F-tests of C(enc):C(norm) (does the encoder effect
  change with the norm?) and C(dec):C(norm), with partial η² = SS / (SS + SS_error).
* **Paired contrasts** (deciding, pooled over norms): encoder dense1 − conv2 and dense1 − res2, paired
  on (decoder, norm); decoder conv2 − dense1 and res2 − dense1, paired on (encoder, norm): 9 pairs each
  in the full grid. The mean pair difference in nats (negative = the claims' direction: dense1 encodes
  better, conv2/res2 decode better), an exact one-sided sign-flip p over all 2^n sign vectors
  (``scipy.stats.permutation_test``; the smallest attainable p is 2^-n, 1/512 with 9 pairs) and a
  percentile bootstrap interval over pairs, resampled within norm levels.
* **Per norm level** (descriptive): the same contrasts on 3 pairs each, whose exact p cannot go below
  1/8 (``p_min``), so they cannot decide; and the share of decoder cells where dense1 is the best encoder.

The deciding rows (distortion) form one Holm family (``contrasts.holm``); each verdict is
``claim_stats.decide`` on the adjusted p: reproduced (the row's statement holds) if p_holm < ALPHA, not
reproduced if the interval lies entirely on the other side of 0, else inconclusive. An F-test has no
interval: it can show an interaction (verdict ``shown``), never its absence (else ``inconclusive``). A sweep that pools other latent sizes or
ablation arms is analysed per arm (``arm``); families not trained at every norm level are left out.

    from analysis import design
    table = design.design_table(runs)      # design.csv; empty for a sweep without the design axes
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from analysis import contrasts, permutation, rank, units
from analysis.arch_claims import DECIDING_METRIC
from analysis.claim_stats import ALPHA, REPRODUCED, decide, fmt3, numeric
from sweep.keys import shown

METRICS = {DECIDING_METRIC: "distortion", "test/neg_elbo": "−ELBO"}  # the first decides
NORM_KEYS, NO_NORM = ("encoder.norm", "decoder.norm"), "none"
FACTORS = {"enc": "family/encoder", "dec": "family/decoder"}
FORMULA = "y ~ C(enc) * C(norm) + C(dec) * C(norm) + C(enc):C(dec)"  # error: enc × dec × norm
TERMS = {
    "C(enc):C(norm)": ("encoder × norm", "The encoder effect changes with the normalisation."),
    "C(dec):C(norm)": ("decoder × norm", "The decoder effect changes with the normalisation."),
}
# (factor, claimed, other, paired on, statement): claimed − other, negative = the claims' direction
CONTRASTS = (
    ("enc", "dense1", "conv2", ["dec", "norm"], "dense1 encodes better than conv2 (C4's direction)."),
    ("enc", "dense1", "res2", ["dec", "norm"], "dense1 encodes better than res2 (C4's direction)."),
    ("dec", "conv2", "dense1", ["enc", "norm"], "conv2 decodes better than dense1 (C5a's direction)."),
    ("dec", "res2", "dense1", ["enc", "norm"], "res2 decodes better than dense1 (C5a's direction)."),
)
COLUMNS = [
    "arm", "role", "test", "part", "metric", "norm", "statement", "statistic", "ci_low", "ci_high",
    "partial_eta2", "df_num", "df_den", "p_value", "p_min", "p_holm", "verdict", "decides", "n_configs",
    "n_units", "note",
]  # fmt: skip
SHOWN = "shown"  # an interaction F-test's verdict where Holm p < ALPHA (else inconclusive: never "absent")
ALL = "all"  # the norm column of a row pooled over norm levels
NORM_ORDER = ("none", "batch", "layer", "group")  # rows per norm level in this order, others after
METHOD = (
    "Design choices (analysis/design.py): the configuration is the unit, one per cell encoder × decoder × "
    "norm; on distortion (−ELBO supporting), OLS `" + FORMULA + "` with the encoder × decoder × norm "
    "interaction as the error term (8 df in the 27-cell grid), type II F-tests of encoder × norm and "
    "decoder × norm (partial η²), and paired contrasts (claimed − other, nats; negative = the claims' "
    "direction) over the cells that hold the other two factors fixed, with an exact one-sided sign-flip p "
    "(all 2^n flips; p_min = 2^-n) and a percentile bootstrap over pairs within norm levels "
    f"({permutation.N_BOOT} resamples); the deciding rows are one Holm family, decided as the claims are "
    f"(reproduced if Holm p < {ALPHA}, not reproduced if the interval lies entirely on the other side of "
    "0, else inconclusive; an F row is shown if Holm p < alpha, else inconclusive). What it cannot decide: one seed, so the F-tests generalise over this grid's "
    "cells, not over seeds; an F-test never shows that an interaction is absent; and the per-norm rows "
    "(3 pairs, exact p ≥ 1/8) and dense1's rank per norm are descriptive."
)


def norm_of(runs: pd.DataFrame) -> pd.Series:
    """The normalisation of each row: ``encoder.norm`` (``enc/dec`` where the two sides differ), ``none``
    where a run did not record it (stored before the key existed)."""
    enc, dec = (
        runs[c].fillna(NO_NORM).astype(str) if c in runs.columns else pd.Series(NO_NORM, index=runs.index)
        for c in NORM_KEYS
    )
    return enc.where(enc.eq(dec), enc + "/" + dec)


def has_design(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` hold a design axis: a norm other than none, or a residual (res) family."""
    if not len(runs):
        return False
    fams = [runs[c].astype(str) for c in FACTORS.values() if c in runs.columns]
    res = any(f.str.fullmatch(r"res\d+").any() for f in fams)
    return bool(res or norm_of(runs).ne(NO_NORM).any())


def cells(u: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
    """(one row per cell: ``enc``, ``dec``, ``norm``, ``y`` the mean ``metric`` of its configurations,
    ``n`` configurations; a note naming the families left out) from the configuration table ``u``. Only
    finite values; an encoder or decoder family not present at every norm level is not crossed with the
    norm and is left out."""
    y = numeric(u, metric)
    keep = u[np.isfinite(y)]
    df = pd.DataFrame({
        "enc": keep[FACTORS["enc"]].astype(str), "dec": keep[FACTORS["dec"]].astype(str),
        "norm": norm_of(keep), "y": y[np.isfinite(y)],
    })  # fmt: skip
    levels = df["norm"].nunique()
    dropped = []
    for k in ("enc", "dec"):
        crossed = df.groupby(k)["norm"].nunique().eq(levels)
        dropped += [f"{k} {f}" for f in crossed.index[~crossed]]
        df = df[df[k].map(crossed)]
    out = df.groupby(["enc", "dec", "norm"], sort=True)["y"].agg(y="mean", n="size").reset_index()
    note = f"not at every norm level, left out: {', '.join(dropped)}" if dropped else ""
    return out, note


def interaction_tests(c: pd.DataFrame) -> dict[str, dict]:
    """The F-test of each of ``TERMS`` on the cell table ``c`` (:func:`cells`): {term: statistic (F),
    df_num, df_den (the error's: the three-way interaction's with one configuration per cell), p_value,
    partial_eta2, note}. NaN with a note where a factor has one level or no error df is left."""
    nan = {"statistic": math.nan, "df_num": math.nan, "df_den": math.nan, "p_value": math.nan}
    out = {t: {**nan, "partial_eta2": math.nan, "note": ""} for t in TERMS}
    one = [k for k in ("enc", "dec", "norm") if c[k].nunique() < 2] if len(c) else ["enc", "dec", "norm"]
    if one:
        for t in out:
            out[t]["note"] = f"one level of {', '.join(one)}: no interaction to test"
        return out
    fit = smf.ols(FORMULA, data=c).fit()
    exog = fit.model.exog
    if fit.df_resid < 1 or np.linalg.matrix_rank(exog) < exog.shape[1]:
        for t in out:
            out[t]["note"] = f"{len(c)} cells leave no error df for {exog.shape[1]} terms: not tested"
        return out
    table = anova_lm(fit, typ=2)
    ss_error = float(table.loc["Residual", "sum_sq"])
    for t in TERMS:
        ss, df, f, p = table.loc[t, ["sum_sq", "df", "F", "PR(>F)"]]
        out[t] = {
            "statistic": float(f), "df_num": float(df), "df_den": float(fit.df_resid), "p_value": float(p),
            "partial_eta2": float(ss / (ss + ss_error)), "note": "",
        }  # fmt: skip
    return out


def paired_differences(c: pd.DataFrame, factor: str, claimed: str, other: str, on: list[str]) -> pd.DataFrame:
    """``claimed − other`` of ``y`` in each cell of ``on`` holding both (columns ``on`` and ``d``)."""
    wide = c.pivot_table(index=on, columns=factor, values="y", aggfunc="mean")
    if claimed not in wide.columns or other not in wide.columns:
        return pd.DataFrame(columns=[*on, "d"])
    return (wide[claimed] - wide[other]).dropna().rename("d").reset_index()


def sign_flip(d) -> tuple[float, float]:
    """(exact one-sided p of mean(d) < 0 over all 2^n sign flips of the pair differences ``d``, the
    smallest p the n pairs can give: 2^-n, times 2^z for z zero differences that no flip changes)."""
    d = np.asarray(d, dtype=float)
    res = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", alternative="less",
        n_resamples=np.inf, vectorized=True,
    )  # fmt: skip
    return float(res.pvalue), 2.0 ** (np.count_nonzero(d == 0) - len(d))


def interval(d, strata, gen: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(d) over pairs resampled within ``strata``; NaNs where no
    stratum holds two pairs."""
    d = np.asarray(d, dtype=float)
    ids = np.arange(len(d))
    if not permutation.resamplable(ids, strata):
        return math.nan, math.nan
    w = permutation.cluster_weights(ids, strata, permutation.N_BOOT, gen)
    return permutation.percentile((w * d).sum(axis=1) / w.sum(axis=1))


def _row(**kw) -> dict:
    base = dict.fromkeys(COLUMNS, math.nan) | {"arm": ALL, "norm": ALL, "verdict": "", "decides": False}
    return base | {"note": ""} | kw


def _contrast(c, spec, metric, role, norm, note) -> dict:
    factor, claimed, other, on, statement = spec
    side = "encoder" if factor == "enc" else "decoder"
    pairs = paired_differences(c, factor, claimed, other, on)
    row = _row(
        role=role, test="paired contrast", part=f"{side} {claimed} − {other}", metric=metric, norm=norm,
        statement=statement, n_configs=2 * len(pairs), n_units=len(pairs), decides=role == "deciding",
    )  # fmt: skip
    if not len(pairs):
        return row | {"note": f"no ({', '.join(on)}) cell holds both {claimed} and {other}"}
    p, p_min = sign_flip(pairs["d"])
    low, high = interval(pairs["d"], permutation.codes(pairs, ["norm"]), permutation.rng())
    why = [note] if note else []
    if role == "descriptive":
        why.insert(0, f"descriptive: {len(pairs)} pairs, the exact p cannot go below {p_min:.3g}")
    return row | {
        "statistic": float(pairs["d"].mean()), "ci_low": low, "ci_high": high, "p_value": p, "p_min": p_min,
        "note": "; ".join(why),
    }  # fmt: skip


def _dense1_best(c: pd.DataFrame, norm: str) -> dict:
    """The share of (decoder, norm) cells in which dense1 is the best encoder (lowest y, ties count)."""
    best = []
    for _, g in c.groupby(["dec", "norm"]):
        if "dense1" in set(g["enc"]) and g["enc"].nunique() > 1:
            best.append(g.loc[g["enc"].eq("dense1"), "y"].iloc[0] <= g["y"].min())
    return _row(
        role="descriptive", test="rank", part="dense1 best of the encoders", metric=DECIDING_METRIC,
        norm=norm, statement="dense1 has the lowest distortion of the encoders in a decoder cell.",
        statistic=float(np.mean(best)) if best else math.nan, n_configs=int(c["n"].sum()),
        n_units=len(best), note="descriptive: share of decoder cells" if best else "no cell holds dense1 and another encoder",
    )  # fmt: skip


def _by_norm(c: pd.DataFrame):
    """(norm level, its cells) in ``NORM_ORDER``, levels it lacks after, sorted."""
    order = {n: i for i, n in enumerate(NORM_ORDER)}
    for level in sorted(c["norm"].unique(), key=lambda n: (order.get(n, len(order)), n)):
        yield level, c[c["norm"].eq(level)]


def _arm_rows(part: pd.DataFrame) -> list[dict]:
    u = units.config_means(part)
    rows = []
    for metric in METRICS:
        c, note = cells(u, metric)
        if not len(c):
            continue
        role = "deciding" if metric == DECIDING_METRIC else "supporting"
        for term, res in interaction_tests(c).items():
            label, statement = TERMS[term]
            why = "; ".join(n for n in (res.pop("note"), note) if n)
            rows.append(_row(
                role=role, test="interaction F", part=label, metric=metric, statement=statement, **res,
                n_configs=int(c["n"].sum()), n_units=len(c), decides=role == "deciding", note=why,
            ))  # fmt: skip
        rows += [_contrast(c, spec, metric, role, ALL, note) for spec in CONTRASTS]
        if metric != DECIDING_METRIC:
            continue
        for level, g in _by_norm(c):
            rows += [_contrast(g, spec, metric, "descriptive", level, note) for spec in CONTRASTS]
        rows += [_dense1_best(g, level) for level, g in _by_norm(c)]
        rows.append(_dense1_best(c, ALL))
    return rows


def _arms(ok: pd.DataFrame):
    """(arm, runs) per latent size and per other config key that tells configurations of one label apart
    (an ablation's arm), the norm keys aside (the design's own axis)."""
    keys = [c for c in ("latent_dim", *rank.id_columns(ok)) if c in ok.columns and c not in NORM_KEYS]
    if not keys:
        yield ALL, ok
        return
    for values, part in ok.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield " ".join(f"{k}={shown(v)}" for k, v in zip(keys, values, strict=True)), part


def design_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The design analysis of ``runs`` (one protocol group): one row per test (``COLUMNS``), the deciding
    rows Holm-adjusted together within each arm and decided on the adjusted p; empty (with the columns)
    where ``runs`` hold no design axis (:func:`has_design`). Only ok runs enter."""
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    frames = []
    for arm, part in _arms(ok) if has_design(ok) else []:
        if not has_design(part):
            continue
        t = pd.DataFrame(_arm_rows(part), columns=COLUMNS).assign(arm=arm)
        fam = t["decides"].astype(bool)
        t["p_holm"] = t["p_holm"].astype(float)
        t.loc[fam, "p_holm"] = contrasts.holm(t.loc[fam, "p_value"].to_numpy(dtype=float))
        for i in t.index[fam]:
            side = "above" if t.at[i, "test"] == "interaction F" else "below"
            low, high = (None, None) if side == "above" else (t.at[i, "ci_low"], t.at[i, "ci_high"])
            verdict = decide(t.at[i, "p_holm"], low, high, 0.0, side)
            t.at[i, "verdict"] = SHOWN if side == "above" and verdict == REPRODUCED else verdict
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


# ---------------------------------------------------------------------------------------- the report
def _p(p) -> str:
    return "" if p is None or not np.isfinite(p) else f"{p:.3g}"


def overview(table: pd.DataFrame) -> pd.DataFrame:
    """The report's verdict table: the deciding rows (any protocol-group columns first, the arm where
    there are several), statistic with its interval or F with its df and partial η², raw and Holm p,
    verdict, n configurations (pairs or cells)."""
    rows = table[table["decides"].astype(bool)]
    groups = list(table.columns[: list(table.columns).index("arm")])
    if table["arm"].nunique() > 1:
        groups.append("arm")

    def stat(r) -> str:
        if r["test"] == "interaction F":
            if not np.isfinite(r["statistic"]):
                return f"not tested ({r['note']})"
            return f"F({r['df_num']:g}, {r['df_den']:g}) = {fmt3(r['statistic'])}, partial η² {r['partial_eta2']:.2f}"
        if not np.isfinite(r["statistic"]):
            return f"n/a ({r['note']})"
        return f"{fmt3(r['statistic'])} [{fmt3(r['ci_low'])}, {fmt3(r['ci_high'])}] nats"

    return pd.DataFrame({
        **{g: rows[g] for g in groups},
        "statement": rows["statement"], "test": rows["part"], "statistic [95 % CI]": rows.apply(stat, axis=1),
        "p": rows["p_value"].map(_p), "Holm p": rows["p_holm"].map(_p), "verdict": rows["verdict"],
        "n configs (units)": [f"{int(a)} ({int(b)})" for a, b in zip(rows["n_configs"], rows["n_units"], strict=True)],
    }).reset_index(drop=True)  # fmt: skip


def summary(table: pd.DataFrame) -> list[str]:
    """One line per arm on the descriptive rows: dense1's rank per norm and each contrast per norm."""
    out = []
    for arm, g in table.groupby("arm", sort=False):
        where = "" if table["arm"].nunique() == 1 else f" ({arm})"
        ranks = g[g["test"].eq("rank") & g["norm"].ne(ALL)]
        if len(ranks):
            shares = ", ".join(
                f"{r['norm']} {int(round(r['statistic'] * r['n_units']))}/{int(r['n_units'])}"
                for _, r in ranks.iterrows()
                if np.isfinite(r["statistic"])
            )
            out.append(f"dense1 is the best encoder{where} in this many decoder cells per norm: {shares}.")
        per = g[g["role"].eq("descriptive") & g["test"].eq("paired contrast")]
        for part, h in per.groupby("part", sort=False):
            cells_ = ", ".join(
                f"{r['norm']} {fmt3(r['statistic'])}" for _, r in h.iterrows() if np.isfinite(r["statistic"])
            )
            out.append(f"{part} per norm{where} (nats, 3 pairs each, descriptive: p ≥ 1/8): {cells_}.")
    return out
