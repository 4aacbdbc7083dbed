"""Design choices (docs/protocol.md "Design choices"): does the reproduction's picture of encoders and
decoders (claims C4 and C5a) survive normalisation layers and residual blocks? The analysis of
``experiment=design``: latent 50 × encoders {dense1, conv2, res2} × decoders {dense1, conv2, res2} ×
norm {none, batch, layer} (the same norm on both sides), one seed, 27 configurations.

**The unit is the configuration** (``analysis.units``: its seeds averaged), one per cell encoder ×
decoder × norm. Response: distortion, the measure the claims decide with (``arch_claims.DECIDING_METRIC``);
−ELBO gives supporting rows.

**One model, every question a 1-df contrast of it.** OLS (statsmodels formula API) of ``FORMULA`` on the
cells: every main effect and two-way interaction, the encoder × decoder × norm interaction left as the
error term (27 cells − 19 terms = 8 df). Each question is a linear contrast of the model's cell means
over the grid's cells (``QUESTIONS``), estimated with its t-interval and two-sided t-test on the error
df (``fit.t_test``): in a complete grid a mean of raw cell differences; a missing cell's mean is the
model's prediction (a contrast the model cannot estimate is not tested, and says so).

* **Direction** (C4, C5a as the claims state them, pooled over the grid's cells): encoder dense1 − conv2
  and dense1 − res2; decoder conv2 − dense1 and res2 − dense1 (negative = the claims' direction).
* **Does dense1's place change with normalisation?** dense1's gap to the other encoders (dense1 − their
  mean, over decoders) at each norm level minus at ``none``. **With residual blocks?** dense1's gap to
  res2 minus its gap to conv2 (= conv2 − res2 encoders).
* **Does the conv-over-dense decoder gap change?** (conv2 − dense1 decoders, over encoders) at each norm
  level minus at ``none``; and res2's gap to dense1 minus conv2's (= res2 − conv2 decoders).

The distortion rows of these questions form one Holm family (``contrasts.holm``) on their two-sided p.
A direction row is reproduced if Holm p < ALPHA with the estimate on the claimed side, not reproduced
if Holm p < ALPHA on the other side (a two-sided test with a directional decision: the two verdicts
have one error control), else inconclusive; a change row is ``shown`` if Holm p < ALPHA (else
inconclusive: a test never shows that a change is absent; its interval bounds how large it can be).
Beside them, not deciding: the same contrasts on −ELBO; the omnibus F-tests of encoder × norm and
decoder × norm (any change of any encoder's effect, not only dense1's); per norm level the gaps and
pairwise contrasts with their intervals, the share of decoder cells where dense1 is the best encoder, and
the error σ̂ (the model's residual sd) with its χ² interval, which every contrast's standard error scales
with (analysis/design_power.py states, before the grid trains, the gaps it can detect at a bracket of σ).
A sweep that pools other latent sizes or ablation arms is analysed per arm (``arm``); families not
trained at every norm level, runs not ok, configurations without a finite value and runs of a
non-default width are left out, each named in ``note``.

    from analysis import design
    table = design.design_table(runs)      # design.csv; empty for a sweep without the design axes
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from analysis import contrasts, rank, units
from analysis.arch_claims import DECIDING_METRIC
from analysis.claim_stats import ALPHA, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, fmt3, numeric
from sweep.keys import shown
from sweep.names import DEFAULT_WIDTH

METRICS = {DECIDING_METRIC: "distortion", "test/neg_elbo": "−ELBO"}  # the first decides
NORM_KEYS, NO_NORM = ("encoder.norm", "decoder.norm"), "none"
WIDTH_KEYS = {"encoder": "encoder.width", "decoder": "decoder.width"}
FACTORS = {"enc": "family/encoder", "dec": "family/decoder"}
FORMULA = "y ~ C(enc) * C(norm) + C(dec) * C(norm) + C(enc):C(dec)"  # error: enc × dec × norm
TERMS = {
    "C(enc):C(norm)": ("encoder × norm", "Some encoder's effect changes with the normalisation (omnibus)."),
    "C(dec):C(norm)": ("decoder × norm", "Some decoder's effect changes with the normalisation (omnibus)."),
}
DENSE, CONV, RES = "dense1", "conv2", "res2"
DIRECTION, CHANGE = "direction", "change"  # how a deciding row is decided (module docstring)
ERROR_SD = "error σ̂"
ERROR_STATEMENT = (
    "The model's residual standard deviation (the encoder × decoder × norm interaction plus one seed's "
    "noise), with its χ² 95 % interval on the error df: every contrast's standard error is it times a "
    "factor of the grid."
)
SHOWN = "shown"  # a change row's verdict where Holm p < ALPHA (else inconclusive: never "absent")
COLUMNS = [
    "arm", "role", "test", "question", "part", "metric", "norm", "statement", "statistic", "ci_low",
    "ci_high", "df_num", "df_den", "partial_eta2", "p_value", "p_holm", "verdict", "decides", "n_configs",
    "n_units", "note",
]  # fmt: skip
ALL = "all"  # the norm column of a row pooled over norm levels
NORM_ORDER = ("none", "batch", "layer", "group")  # rows per norm level in this order, others after
CI = 0.95
METHOD = (
    "Design choices (analysis/design.py): the configuration is the unit, one per cell encoder × decoder × "
    "norm; on distortion (−ELBO supporting), one OLS model `" + FORMULA + "` with the encoder × decoder × "
    "norm interaction as the error term (8 df in the 27-cell grid), and each question a 1-df contrast of "
    "its cell means over the grid (nats; a missing cell's mean is the model's prediction) with a "
    f"{CI:.0%} t-interval and a two-sided t-test on the error df: the claims' directions (dense1 − conv2 "
    "and dense1 − res2 encoders, conv2 − dense1 and res2 − dense1 decoders; negative = the claims' "
    "direction), dense1's gap to the other encoders and the conv2 − dense1 decoder gap at each norm "
    "level minus at none, and each gap with res2 minus with conv2. These rows on distortion are one "
    f"Holm family: a direction row is reproduced if Holm p < {ALPHA} on the claimed side, not reproduced "
    "if on the other side, else inconclusive; a change row is shown if Holm p < alpha, else "
    "inconclusive (never absent: its interval bounds it). The intervals are unadjusted 95 % intervals; "
    "the verdicts rest on the Holm p, so an interval may exclude 0 where the verdict is inconclusive. "
    "What it cannot decide: one seed, so the tests are conditional on this grid's cells (its encoder × "
    "decoder pairs as they are, fixed effects) and their noise, not a statement about other seeds or "
    "architectures; the t-tests assume one error variance for every cell (a norm level with noisier runs "
    "makes the rows that involve it over-reject and the others conservative); "
    "one extreme run moves its contrasts by a ninth to a third of its excess; the omnibus F-tests, the "
    "per-norm rows, dense1's rank per norm and the error σ̂ (with its χ² 95 % interval) are descriptive."
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
    ``n`` configurations; a note naming what was left out) from the configuration table ``u``. Only
    finite values. A norm level holding fewer than half the cells of the fullest one (a stray run: a
    mixed ``none/batch``, another norm) is left out rather than shrinking the grid to its cells; a
    family other than the design's own (dense1, conv2, res2) not present at every norm level left is
    not crossed with the norm and is left out (e.g. a reproduction's dense4 runs at norm none); a
    design family's missing cells stay missing (the model predicts them where it can)."""
    y = numeric(u, metric)
    keep = u[np.isfinite(y)]
    bad = sorted(u.loc[~np.isfinite(y), "run_name"].astype(str)) if "run_name" in u.columns else []
    df = pd.DataFrame({
        "enc": keep[FACTORS["enc"]].astype(str), "dec": keep[FACTORS["dec"]].astype(str),
        "norm": norm_of(keep), "y": y[np.isfinite(y)],
    })  # fmt: skip
    per_level = df.drop_duplicates(["enc", "dec", "norm"]).groupby("norm").size()
    sparse = per_level[per_level < per_level.max() / 2] if len(per_level) else per_level
    dropped = [f"norm {n} ({k} cells of {per_level.max()})" for n, k in sparse.items()]
    df = df[~df["norm"].isin(sparse.index)]
    levels = df["norm"].nunique()
    for k in ("enc", "dec"):
        crossed = df.groupby(k)["norm"].nunique().eq(levels)
        crossed |= crossed.index.isin((DENSE, CONV, RES))
        dropped += [f"{k} {f}" for f in crossed.index[~crossed]]
        df = df[df[k].map(crossed)]
    out = df.groupby(["enc", "dec", "norm"], sort=True)["y"].agg(y="mean", n="size").reset_index()
    notes = [_named(f"configurations without a finite {metric}", bad)] if bad else []
    notes += [f"not crossed with the norm levels, left out: {', '.join(dropped)}"] if dropped else []
    return out, "; ".join(notes)


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
    exog = design_matrix(c, _levels(c))  # FORMULA's columns: its rank, before a fit would warn
    if len(c) <= exog.shape[1] or np.linalg.matrix_rank(exog) < exog.shape[1]:
        for t in out:
            out[t]["note"] = f"{len(c)} cells leave no error df for {exog.shape[1]} terms: not tested"
        return out
    fit = smf.ols(FORMULA, data=c).fit()
    table = anova_lm(fit, typ=2)
    ss_error = float(table.loc["Residual", "sum_sq"])
    for t in TERMS:
        ss, df, f, p = table.loc[t, ["sum_sq", "df", "F", "PR(>F)"]]
        out[t] = {
            "statistic": float(f), "df_num": float(df), "df_den": float(fit.df_resid), "p_value": float(p),
            "partial_eta2": float(ss / (ss + ss_error)), "note": "",
        }  # fmt: skip
    return out


def _levels(c: pd.DataFrame) -> dict[str, list[str]]:
    """The levels of each factor in the cell table, norms in ``NORM_ORDER`` (others after, sorted)."""
    order = {n: i for i, n in enumerate(NORM_ORDER)}
    return {
        "enc": sorted(c["enc"].unique()), "dec": sorted(c["dec"].unique()),
        "norm": sorted(c["norm"].unique(), key=lambda n: (order.get(n, len(order)), n)),
    }  # fmt: skip


def grid(c: pd.DataFrame) -> pd.DataFrame:
    """Every cell encoder × decoder × norm of the levels in ``c`` (the cells a contrast averages over,
    trained or not)."""
    lv = _levels(c)
    return pd.MultiIndex.from_product(
        [lv["enc"], lv["dec"], lv["norm"]], names=["enc", "dec", "norm"]
    ).to_frame(index=False)


def gap(g: pd.DataFrame, factor: str, claimed: str, others: list[str], norm: str | None = None) -> np.ndarray:
    """Weights over the cells of ``g`` (:func:`grid`) of the mean over the other factor's levels (and
    over norms, or at ``norm`` alone) of ``claimed`` − the mean of ``others`` on ``factor``: e.g. dense1's
    gap to the other encoders. Zero weights where ``claimed`` or every one of ``others`` is absent."""
    at = g["norm"].eq(norm) if norm is not None else pd.Series(True, index=g.index)
    others = [o for o in others if o in set(g[factor])]
    if claimed not in set(g[factor]) or not others or not at.any():
        return np.zeros(len(g))
    w = np.where(g[factor].eq(claimed) & at, 1.0, 0.0)
    w -= np.where(g[factor].isin(others) & at, 1.0 / len(others), 0.0)
    return w / int((g[factor].eq(claimed) & at).sum())


def _minus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The difference of two gaps' weights; zeros (no contrast) where either gap has none."""
    return a - b if np.any(a) and np.any(b) else np.zeros_like(a)


def questions(g: pd.DataFrame) -> list[tuple[str, str, str, str, np.ndarray]]:
    """The family's contrasts, in order: (kind: DIRECTION or CHANGE, part, statement, norm, weights over
    ``g``); a norm change for every level of ``g`` but ``none``."""
    encs = sorted(set(g["enc"]))
    out = [
        (DIRECTION, f"encoder {DENSE} − {o}", f"{DENSE} encodes better than {o} (C4's direction).", ALL,
         gap(g, "enc", DENSE, [o])) for o in (CONV, RES)
    ] + [
        (DIRECTION, f"decoder {o} − {DENSE}", f"{o} decodes better than {DENSE} (C5a's direction).", ALL,
         gap(g, "dec", o, [DENSE])) for o in (CONV, RES)
    ]  # fmt: skip
    others = [e for e in encs if e != DENSE]
    for level in [n for n in _levels(g)["norm"] if n != NO_NORM]:
        out.append((
            CHANGE, f"dense1's encoder gap, {level} − none",
            f"dense1's gap to the other encoders ({DENSE} − their mean) changes from norm none to {level}.",
            level, _minus(gap(g, "enc", DENSE, others, level), gap(g, "enc", DENSE, others, NO_NORM)),
        ))  # fmt: skip
    out.append((
        CHANGE, f"dense1's encoder gap, to {RES} − to {CONV}",
        f"dense1's gap to {RES} differs from its gap to {CONV} (= {CONV} − {RES} encoders): residual blocks "
        "change dense1's margin, not necessarily its rank (the direction rows and ranks say whether it stays ahead).",
        ALL, _minus(gap(g, "enc", DENSE, [RES]), gap(g, "enc", DENSE, [CONV])),
    ))  # fmt: skip
    for level in [n for n in _levels(g)["norm"] if n != NO_NORM]:
        out.append((
            CHANGE, f"decoder gap {CONV} − {DENSE}, {level} − none",
            f"The {CONV}-over-{DENSE} decoder gap changes from norm none to {level}.",
            level, _minus(gap(g, "dec", CONV, [DENSE], level), gap(g, "dec", CONV, [DENSE], NO_NORM)),
        ))  # fmt: skip
    out.append((
        CHANGE, f"decoder gap to {DENSE}, {RES} − {CONV}",
        f"{RES}'s decoder gap to {DENSE} differs from {CONV}'s (= {RES} − {CONV} decoders): residual blocks "
        "change the conv-over-dense decoder gap.",
        ALL, _minus(gap(g, "dec", RES, [DENSE]), gap(g, "dec", CONV, [DENSE])),
    ))  # fmt: skip
    return out


def per_norm(g: pd.DataFrame) -> list[tuple[str, str, str, np.ndarray]]:
    """The descriptive contrasts at each norm level: (part, statement, norm, weights over ``g``)."""
    others = [e for e in sorted(set(g["enc"])) if e != DENSE]
    out = []
    for level in _levels(g)["norm"]:
        out += [
            ("dense1's encoder gap", f"{DENSE} − the mean of the other encoders at norm {level}.", level,
             gap(g, "enc", DENSE, others, level)),
            *[(f"encoder {DENSE} − {o}", f"{DENSE} − {o} encoders at norm {level}.", level,
               gap(g, "enc", DENSE, [o], level)) for o in (CONV, RES)],
            *[(f"decoder {o} − {DENSE}", f"{o} − {DENSE} decoders at norm {level}.", level,
               gap(g, "dec", o, [DENSE], level)) for o in (CONV, RES)],
        ]  # fmt: skip
    return out


def design_matrix(frame: pd.DataFrame, levels: dict[str, list[str]]) -> np.ndarray:
    """The columns of ``FORMULA`` for the rows ``frame`` (``enc``, ``dec``, ``norm``), treatment-coded
    against each factor's first level: intercept, the main effects, then enc × norm, dec × norm and
    enc × dec (built here rather than by the formula parser, whose design-matrix API differs between
    statsmodels versions; the fit is the same)."""
    dummies = {k: [(frame[k] == v).to_numpy(float) for v in levels[k][1:]] for k in ("enc", "dec", "norm")}
    cols = [np.ones(len(frame)), *dummies["enc"], *dummies["norm"], *dummies["dec"]]
    for a, b in (("enc", "norm"), ("dec", "norm"), ("enc", "dec")):
        cols += [x * y for x in dummies[a] for y in dummies[b]]
    return np.column_stack(cols)


class Model:
    """The OLS fit of ``FORMULA`` on a cell table, and 1-df contrasts of its cell means over the grid."""

    def __init__(self, c: pd.DataFrame):
        self.c, self.g, self.fit, self.why = c, grid(c), None, ""
        self.n = (
            self.g.merge(c, on=["enc", "dec", "norm"], how="left")["n"].fillna(0).to_numpy()
        )  # per grid cell
        one = [k for k in ("enc", "dec", "norm") if c[k].nunique() < 2] if len(c) else ["enc", "dec", "norm"]
        if one:
            self.why = f"one level of {', '.join(one)}: no model"
            return
        levels = _levels(c)
        exog = design_matrix(c, levels)
        rank_ = np.linalg.matrix_rank(exog)
        if len(c) - rank_ < 1:
            self.why = f"{len(c)} cells leave no error df for {rank_} terms: not tested"
            return
        with warnings.catch_warnings():  # rank-deficient (a missing cell): each contrast checks estimability
            warnings.simplefilter("ignore", SingularMatrixWarning)
            self.fit = sm.OLS(c["y"].to_numpy(float), exog).fit()
        self.x, self.exog = design_matrix(self.g, levels), exog

    def contrast(self, w: np.ndarray) -> dict:
        """{statistic, ci_low, ci_high, df_den, p_value (two-sided), note} of the contrast ``w`` · cell
        means over the grid; NaN with the reason where there is none."""
        nan = dict.fromkeys(("statistic", "ci_low", "ci_high", "df_den", "p_value"), math.nan)
        if self.fit is None:
            return nan | {"note": self.why}
        if not np.any(w):
            return nan | {"note": "a family it compares is not in the grid"}
        lin = (w @ self.x)[None, :]
        exog = self.exog
        if not np.allclose(lin @ np.linalg.pinv(exog) @ exog, lin, atol=1e-8 * max(1.0, np.abs(lin).max())):
            return nan | {"note": "the cells trained leave this contrast not estimable: not tested"}
        t = self.fit.t_test(lin)
        low, high = np.asarray(t.conf_int(alpha=1 - CI))[0]
        return {
            "statistic": float(np.squeeze(t.effect)), "ci_low": float(low), "ci_high": float(high),
            "df_den": float(self.fit.df_resid), "p_value": float(np.squeeze(t.pvalue)), "note": "",
        }  # fmt: skip

    def error_sd(self) -> dict:
        """{statistic, ci_low, ci_high, df_den, note}: the error σ̂ (the residual standard deviation: the
        encoder × decoder × norm interaction plus one seed's noise), with its χ² interval on the error df
        (normal errors); every contrast's standard error is σ̂ times a factor of the grid alone."""
        nan = dict.fromkeys(("statistic", "ci_low", "ci_high", "df_den"), math.nan)
        if self.fit is None:
            return nan | {"note": self.why}
        df, s2 = float(self.fit.df_resid), float(self.fit.scale)
        high, low = (math.sqrt(df * s2 / stats.chi2.ppf(q, df)) for q in ((1 - CI) / 2, (1 + CI) / 2))
        return {"statistic": math.sqrt(s2), "ci_low": low, "ci_high": high, "df_den": df, "note": ""}


def _row(**kw) -> dict:
    base = dict.fromkeys(COLUMNS, math.nan) | {"arm": ALL, "norm": ALL, "verdict": "", "decides": False}
    return base | {"note": "", "question": ""} | kw


def _weighted_cells(model: Model, w: np.ndarray) -> tuple[int, int]:
    """(configurations, cells) of the trained cells the contrast ``w`` puts weight on."""
    n = model.n[np.abs(w) > 0]
    return int(n.sum()), int(np.count_nonzero(n))


def _dense1_best(c: pd.DataFrame, norm: str) -> dict:
    """The share of (decoder, norm) cells in which dense1 is the best encoder (lowest y, ties count)."""
    best = []
    for _, g in c.groupby(["dec", "norm"]):
        if DENSE in set(g["enc"]) and g["enc"].nunique() > 1:
            best.append(g.loc[g["enc"].eq(DENSE), "y"].iloc[0] <= g["y"].min())
    return _row(
        role="descriptive", test="rank", part="dense1 best of the encoders", metric=DECIDING_METRIC,
        norm=norm, statement="dense1 has the lowest distortion of the encoders in a decoder cell.",
        statistic=float(np.mean(best)) if best else math.nan, n_configs=int(c["n"].sum()),
        n_units=len(best), note="descriptive: share of decoder cells" if best else "no cell holds dense1 and another encoder",
    )  # fmt: skip


def _by_norm(c: pd.DataFrame):
    """(norm level, its cells) in ``NORM_ORDER``, levels it lacks after, sorted."""
    for level in _levels(c)["norm"]:
        yield level, c[c["norm"].eq(level)]


def _arm_rows(part: pd.DataFrame, left: list[str]) -> list[dict]:
    """Every row of one arm; ``left`` names what was left out before (runs not ok, other widths)."""
    u = units.config_means(part)
    twice = (
        rank.with_config_id(part).duplicated(["config", "seed"], keep=False)
        if "seed" in part.columns
        else None
    )
    if twice is not None and twice.any():
        names = sorted(set(part.loc[twice.to_numpy(), "run_name"].astype(str)))
        left = [
            *left,
            _named("configurations trained more than once with one seed (averaged as seeds)", names).replace(
                ", left out:", ":"
            ),
        ]
    rows = []
    for metric in METRICS:
        c, note = cells(u, metric)
        if not len(c):
            continue
        missing = len(grid(c)) - len(c)
        notes = [*left, note] + (
            [f"{missing} of {len(grid(c))} cells not trained: their means are the model's predictions"]
            if missing else []
        )  # fmt: skip
        why = "; ".join(n for n in notes if n)
        deciding = metric == DECIDING_METRIC
        model = Model(c)
        for kind, label, statement, norm, w in questions(model.g):
            n_configs, n_cells = _weighted_cells(model, w)
            res = model.contrast(w)
            rows.append(_row(
                role="deciding" if deciding else "supporting", test=f"{kind} contrast", question=kind,
                part=label, metric=metric, norm=norm, statement=statement, df_num=1.0, decides=deciding,
                n_configs=n_configs, n_units=n_cells, **res | {"note": "; ".join(n for n in (res["note"], why) if n)},
            ))  # fmt: skip
        res = model.error_sd()
        rows.append(_row(
            role="descriptive", test="error sd", part=ERROR_SD, metric=metric, statement=ERROR_STATEMENT,
            n_configs=int(c["n"].sum()), n_units=len(c),
            **res | {"note": "; ".join(n for n in ("descriptive", res["note"], why) if n)},
        ))  # fmt: skip
        for term, res in interaction_tests(c).items():
            label, statement = TERMS[term]
            rows.append(_row(
                role="supporting", test="interaction F", part=label, metric=metric, statement=statement,
                **res | {"note": "; ".join(n for n in ("omnibus", res["note"], why) if n)},
                n_configs=int(c["n"].sum()), n_units=len(c),
            ))  # fmt: skip
        if not deciding:
            continue
        for label, statement, norm, w in per_norm(model.g):
            n_configs, n_cells = _weighted_cells(model, w)
            res = model.contrast(w)
            rows.append(_row(
                role="descriptive", test="contrast", part=label, metric=metric, norm=norm, statement=statement,
                df_num=1.0, n_configs=n_configs, n_units=n_cells,
                **res | {"note": "; ".join(n for n in ("descriptive", res["note"]) if n)},
            ))  # fmt: skip
        rows += [_dense1_best(g, level) for level, g in _by_norm(c)]
        rows.append(_dense1_best(c, ALL))
    return rows


def _default_width(part: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """(a mask of the runs whose encoder and decoder widths are their kinds' defaults, the names of the
    others: the design grid trains default widths, and a run name holds no width). Runs without width
    columns count as default."""
    keep = pd.Series(True, index=part.index)
    for col, family in zip(WIDTH_KEYS.values(), FACTORS.values(), strict=True):  # encoder, decoder
        if col in part.columns and family in part.columns:
            default = part[family].astype(str).str.rstrip("0123456789").map(DEFAULT_WIDTH)
            width = pd.to_numeric(part[col], errors="coerce")
            keep &= default.isna() | width.isna() | width.eq(default)
    names = part.loc[~keep, "run_name"].astype(str) if "run_name" in part.columns else pd.Series(dtype=str)
    return keep, sorted(names)


def arms(runs: pd.DataFrame):
    """(arm, runs) per latent size and per other config key that tells configurations of one label apart
    (an ablation's arm), the norm keys (the design's own axis) and widths (a kind's default: runs of
    another width are left out, :func:`_default_width`) aside."""
    skip = {*NORM_KEYS, *WIDTH_KEYS.values()}
    keys = [c for c in ("latent_dim", *rank.id_columns(runs)) if c in runs.columns and c not in skip]
    if not keys:
        yield ALL, runs
        return
    for values, part in runs.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield " ".join(f"{k}={shown(v)}" for k, v in zip(keys, values, strict=True)), part


def _named(what: str, names: list[str], most: int = 4) -> str:
    shown_ = ", ".join(names[:most]) + (f", … ({len(names)} in all)" if len(names) > most else "")
    return f"{len(names)} {what}, left out: {shown_}"


def _verdict(kind: str, p_holm: float, statistic: float) -> str:
    """A deciding row's verdict from its Holm p (module docstring)."""
    if not np.isfinite(p_holm) or p_holm >= ALPHA:
        return INCONCLUSIVE
    if kind == CHANGE:
        return SHOWN
    return REPRODUCED if statistic < 0 else NOT_REPRODUCED


def design_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The design analysis of ``runs`` (one protocol group): one row per test (``COLUMNS``), the deciding
    rows Holm-adjusted together within each arm and decided on the adjusted p; empty (with the columns)
    where ``runs`` hold no design axis (:func:`has_design`). Only ok runs of default widths enter; the
    others are named in the notes."""
    status = runs["status"].astype(str) if "status" in runs.columns else pd.Series("ok", index=runs.index)
    frames = []
    for arm, part in arms(runs) if has_design(runs[status.eq("ok")]) else []:
        ok = status.loc[part.index].eq("ok")
        wide, other_width = _default_width(part)
        if not has_design(part[ok & wide]):
            continue
        not_ok = part.loc[~ok, "run_name"].astype(str) + " (" + status.loc[part.index][~ok] + ")"
        left = [_named("runs not ok", sorted(not_ok))] if (~ok).any() else []
        left += [_named("runs of a non-default width", other_width)] if other_width else []
        t = pd.DataFrame(_arm_rows(part[ok & wide], left), columns=COLUMNS).assign(arm=arm)
        fam = t["decides"].astype(bool)
        t["p_holm"] = t["p_holm"].astype(float)
        t.loc[fam, "p_holm"] = contrasts.holm(t.loc[fam, "p_value"].to_numpy(dtype=float))
        for i in t.index[fam]:
            t.at[i, "verdict"] = _verdict(t.at[i, "question"], t.at[i, "p_holm"], t.at[i, "statistic"])
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


# ---------------------------------------------------------------------------------------- the report
def _p(p) -> str:
    return "" if p is None or not np.isfinite(p) else f"{p:.3g}"


def overview(table: pd.DataFrame) -> pd.DataFrame:
    """The report's verdict table: the deciding rows (any protocol-group columns first, the arm where
    there are several), the contrast in nats with its t-interval, raw and Holm p, verdict, the
    configurations (cells) it averages over."""
    rows = table[table["decides"].astype(bool)]
    groups = list(table.columns[: list(table.columns).index("arm")])
    if table["arm"].nunique() > 1:
        groups.append("arm")

    def stat(r) -> str:
        if not np.isfinite(r["statistic"]):
            return f"not tested ({r['note']})"
        return f"{fmt3(r['statistic'])} [{fmt3(r['ci_low'])}, {fmt3(r['ci_high'])}] nats"

    return pd.DataFrame({
        **{g: rows[g] for g in groups},
        "statement": rows["statement"], "contrast": rows["part"], "estimate [95 % CI]": rows.apply(stat, axis=1),
        "p": rows["p_value"].map(_p), "Holm p": rows["p_holm"].map(_p), "verdict": rows["verdict"],
        "n configs (cells)": [f"{int(a)} ({int(b)})" for a, b in zip(rows["n_configs"], rows["n_units"], strict=True)],
    }).reset_index(drop=True)  # fmt: skip


def summary(table: pd.DataFrame) -> list[str]:
    """Lines per arm on the rows beside the verdicts: what was left out, dense1's rank and the gaps per
    norm (with their intervals), the omnibus F-tests."""
    out = []
    for arm, g in table.groupby("arm", sort=False):
        where = "" if table["arm"].nunique() == 1 else f" ({arm})"
        fam = g[g["decides"].astype(bool)]
        levels = [n for n in g.loc[g["test"].eq("rank"), "norm"] if n != ALL]
        if levels:
            out.append(
                f"Norm levels analysed{where}: {', '.join(levels)} ({len(fam)} questions: a change per level "
                "against none, where none is among them)."
            )
        left = sorted(
            {
                n
                for note in fam["note"]
                for n in str(note).split("; ")
                if "left out" in n or "not trained" in n
            }
        )
        if left:
            out.append(f"Left out or predicted{where}: " + "; ".join(left) + ".")
        ranks = g[g["test"].eq("rank") & g["norm"].ne(ALL)]
        if len(ranks):
            shares = ", ".join(
                f"{r['norm']} {int(round(r['statistic'] * r['n_units']))}/{int(r['n_units'])}"
                for _, r in ranks.iterrows()
                if np.isfinite(r["statistic"])
            )
            out.append(f"dense1 is the best encoder{where} in this many decoder cells per norm: {shares}.")
        per = g[g["role"].eq("descriptive") & g["test"].eq("contrast")]
        for part, h in per.groupby("part", sort=False):
            cells_ = ", ".join(
                f"{r['norm']} {fmt3(r['statistic'])} [{fmt3(r['ci_low'])}, {fmt3(r['ci_high'])}]"
                for _, r in h.iterrows()
                if np.isfinite(r["statistic"])
            )
            if cells_:  # none estimated: its rows say why
                out.append(f"{part} per norm{where} (nats, {CI:.0%} t-intervals, descriptive): {cells_}.")
        sd = g[g["test"].eq("error sd") & g["metric"].eq(DECIDING_METRIC)]
        for _, r in sd[np.isfinite(sd["statistic"].astype(float))].iterrows():
            out.append(
                f"Error σ̂{where} ({METRICS[DECIDING_METRIC]}: the encoder × decoder × norm interaction plus one "
                f"seed's noise): {fmt3(r['statistic'])} [{fmt3(r['ci_low'])}, {fmt3(r['ci_high'])}] nats on "
                f"{r['df_den']:g} df ({CI:.0%} χ² interval); each question's standard error is σ̂ times a factor "
                "of the grid (analysis/design_power.py)."
            )
        omnibus = g[g["test"].eq("interaction F") & g["metric"].eq(DECIDING_METRIC)]
        tested = [
            f"{r['part']} F({r['df_num']:g}, {r['df_den']:g}) = {fmt3(r['statistic'])}, p {_p(r['p_value'])}"
            for _, r in omnibus.iterrows()
            if np.isfinite(r["statistic"])
        ]
        if tested:
            out.append(
                f"Omnibus F-tests{where} (any encoder's or decoder's effect, descriptive): {'; '.join(tested)}."
            )
    return out
