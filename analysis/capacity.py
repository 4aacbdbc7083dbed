"""Architecture or capacity? A linear model of test distortion (and −ELBO) on the encoder and decoder
families with log parameter counts as covariates, to ask whether C4's and C5's family effects are
capacity effects.

Model (ordinary least squares, statsmodels' formula API):

    y ~ C(encoder family) + C(decoder family) + log(params/encoder) + log(params/decoder)
        + C(latent_dim) + C(seed)

fitted beside the same model without the two capacity terms. Seed and latent size are fixed effects
(the design's blocks); a conv1 encoder's parameters grow eight-fold from L = 25 to L = 200 (its Gaussian
heads) while a dense4 encoder's barely move, so the capacity slopes are identified by how parameter
counts vary across families and latent sizes. Standard errors are cluster-robust by configuration (one
configuration's seeds share its errors) when there are at least ``MIN_CLUSTERS`` configurations, plain
OLS otherwise. The family effects the claims are about are linear contrasts of the coefficients:
C4 = dense1 encoder − the mean of the other encoder families, C5 = the mean of the conv decoders of depth
>= 2 − the mean of the other decoder families (nats; negative = reconstructs better), each with its 95 %
interval. A design that cannot separate a term (one seed, one latent size, parameter counts that are a
function of the family) drops that term with a note rather than failing.

**Identifiability.** In a grid whose widths are fixed per family (G0), a configuration's parameter
counts are an exact function of family × latent size: the capacity slopes are then two degrees of
freedom of a family × latent interaction, not capacity. :func:`identifiability` measures it (R² of each
log parameter count on the family × latent cells; 1 means not identified) and the table carries it, so
the report keeps the model as a description only and says why; capacity is controlled by design in the
capacity-matched grid (``experiment=capacity_matched``), where every family of a role has one count.

    from analysis import capacity
    table = capacity.capacity_table(runs)
    capacity.summary(table)                  # one sentence per claim and response
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from analysis import rank

RESPONSES = ("test/distortion", "test/neg_elbo")
MODELS = ("families", "families + capacity")
MIN_CLUSTERS = 20  # configurations needed for cluster-robust standard errors
C5_MIN_DEPTH = 2
COLUMNS = [
    "arm", "response", "model", "quantity", "estimate", "ci_low", "ci_high", "p_value", "n", "r2", "se", "note",
]  # fmt: skip
QUANTITIES = {
    "C4": "C4: dense1 encoder − other encoders",
    "C5": f"C5: conv decoders of depth >= {C5_MIN_DEPTH} − other decoders",
    "enc": "log params/encoder (per e-fold)",
    "dec": "log params/decoder (per e-fold)",
}
CONTRASTS = {  # what the regression's family contrasts are, said in each sentence of the summary
    "C4": "dense1 − the mean of the other encoder families, dense4 included (the claims check decides C4 "
    "against each family)",
    "C5": f"conv decoders of depth >= {C5_MIN_DEPTH} − the mean of the other decoders, dense ones included "
    "(the claims check decides C5a and C5b apart)",
}
_FAMILY = re.compile(r"^([a-z]+)(\d+)$")


def _deep_conv(name: str) -> bool:
    m = _FAMILY.match(str(name))
    return bool(m and m.group(1) == "conv" and int(m.group(2)) >= C5_MIN_DEPTH)


def _frame(runs: pd.DataFrame, response: str) -> pd.DataFrame:
    """The model's data: ok runs with a finite response and positive parameter counts."""
    need = [response, "family/encoder", "family/decoder", "params/encoder", "params/decoder"]
    if not len(runs) or any(c not in runs.columns for c in need):
        return pd.DataFrame(columns=["y", "enc", "dec", "log_pe", "log_pd", "latent", "seed", "config"])
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    y = pd.to_numeric(ok[response], errors="coerce")
    pe, pd_ = (
        pd.to_numeric(ok["params/encoder"], errors="coerce"),
        pd.to_numeric(ok["params/decoder"], errors="coerce"),
    )
    keep = np.isfinite(y) & (pe > 0) & (pd_ > 0)
    ok = ok[keep]
    return pd.DataFrame(
        {
            "y": y[keep].to_numpy(float),
            "enc": ok["family/encoder"].astype(str).to_numpy(),
            "dec": ok["family/decoder"].astype(str).to_numpy(),
            "log_pe": np.log(pe[keep].to_numpy(float)),
            "log_pd": np.log(pd_[keep].to_numpy(float)),
            "latent": ok["latent_dim"].astype(str).to_numpy() if "latent_dim" in ok.columns else "0",
            "seed": ok["seed"].astype(str).to_numpy() if "seed" in ok.columns else "0",
            "config": rank.with_config_id(ok)["config"].to_numpy(),
        }
    )


def _contrast(names: list[str], factor: str, levels: list[str], group: set[str]) -> np.ndarray | None:
    """Contrast vector over the coefficients ``names``: mean effect of the levels in ``group`` minus the
    mean of the others (treatment coding: the reference level's effect is 0). None when either side is
    empty."""
    inside, outside = [lv for lv in levels if lv in group], [lv for lv in levels if lv not in group]
    if not inside or not outside:
        return None
    vec = np.zeros(len(names))
    for lv, weight in [(lv, 1 / len(inside)) for lv in inside] + [(lv, -1 / len(outside)) for lv in outside]:
        name = f"C({factor})[T.{lv}]"
        if name in names:
            vec[names.index(name)] += weight
    return vec


def fit(df: pd.DataFrame, capacity: bool) -> tuple[object | None, list[str]]:
    """(statsmodels results or None, notes): the model on ``_frame`` data, terms the design cannot
    separate left out with a note."""
    import statsmodels.formula.api as smf

    notes = []
    terms = []
    for col, label in (("enc", "encoder family"), ("dec", "decoder family")):
        if df[col].nunique() > 1:
            terms.append(f"C({col})")
        else:
            notes.append(f"one {label} ({df[col].iloc[0] if len(df) else 'none'}): no {label} term")
    for col, label in (("latent", "latent size"), ("seed", "seed")):
        if df[col].nunique() > 1:
            terms.append(f"C({col})")
        else:
            notes.append(f"one {label}: no {label} fixed effect")
    base = terms[:]
    if capacity:
        terms += ["log_pe", "log_pd"]
    if not len(df) or len(df) <= len(terms) + 1:
        return None, notes + [f"{len(df)} runs: too few for the model"]
    import patsy

    def rank_ok(ts) -> bool:
        x = patsy.dmatrix(" + ".join(ts) if ts else "1", df, return_type="dataframe")
        return np.linalg.matrix_rank(x.to_numpy()) == x.shape[1] and len(df) > x.shape[1]

    if capacity:
        for cap, label in (("log_pe", "encoder"), ("log_pd", "decoder")):
            if cap in terms and not rank_ok(terms):
                terms.remove(cap)
                notes.append(
                    f"log params/{label} is a function of the other terms in this design (rank deficient): "
                    f"capacity and family cannot be told apart, the term is left out"
                )
    if not rank_ok(terms):
        return None, notes + ["the design matrix is rank deficient even without capacity terms"]
    formula = "y ~ " + (" + ".join(terms) if terms else "1")
    model = smf.ols(formula, data=df)
    n_clusters = df["config"].nunique()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_clusters >= MIN_CLUSTERS:
            codes = pd.factorize(df["config"])[0]
            res = model.fit(cov_type="cluster", cov_kwds={"groups": codes})
            notes.append(f"cluster-robust SEs over {n_clusters} configurations")
        else:
            res = model.fit()
            notes.append(f"plain OLS SEs ({n_clusters} configurations: too few to cluster)")
    if capacity and terms == base:
        notes.append("no capacity term could be fitted")
    return res, notes


def _row(arm, response, model, quantity, res, vec, n, notes) -> dict:
    row = {
        "arm": arm,
        "response": response,
        "model": model,
        "quantity": quantity,
        "n": n,
        "note": "; ".join(notes),
    }
    if res is None or vec is None:
        return {
            **row,
            "estimate": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p_value": np.nan,
            "r2": np.nan,
            "se": "",
        }
    t = res.t_test(vec)
    low, high = np.asarray(t.conf_int(alpha=0.05)).ravel()
    return {
        **row, "estimate": float(np.asarray(t.effect).ravel()[0]), "ci_low": float(low), "ci_high": float(high),
        "p_value": float(np.asarray(t.pvalue).ravel()[0]), "r2": float(res.rsquared), "se": res.cov_type,
    }  # fmt: skip


def _arms(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    from analysis.budget import arms

    return arms(runs)


IDENTIFIED_BELOW = 0.999  # R² of log params on family × latent at or above this: not identified
DESIGN = "design"  # the response of the identifiability rows
MATCHED_SPREAD = float(np.log(1.05 / 0.95))  # counts within ±5 % of one target: capacity matched by design


def identifiability(df: pd.DataFrame, role: str) -> float:
    """R² of the log parameter count of ``role`` (``encoder`` or ``decoder``) on the (family of that
    role × latent size) cells of a model frame (``_frame``): 1 when the count is a function of those
    cells, as in a grid of fixed widths."""
    key = {"encoder": ("log_pe", "enc"), "decoder": ("log_pd", "dec")}[role]
    y = df[key[0]].to_numpy(dtype=float)
    cells = (df[key[1]].astype(str) + "|" + df["latent"].astype(str)).to_numpy()
    keep = np.isfinite(y)
    y, cells = y[keep], cells[keep]
    total = ((y - y.mean()) ** 2).sum() if len(y) else 0.0
    if total <= 0:
        return float("nan")
    fitted = pd.Series(y).groupby(cells).transform("mean").to_numpy()
    return float(1 - ((y - fitted) ** 2).sum() / total)


def capacity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm × response × model × quantity (``QUANTITIES``): the estimate in nats with its
    95 % interval and p-value, n runs, R² and notes on terms the design could not separate."""
    rows = []
    for arm, part in _arms(runs) if len(runs) else []:
        for response in RESPONSES:
            df = _frame(part, response)
            if not len(df):
                continue
            for model in MODELS:
                res, notes = fit(df, capacity=model != "families")
                names = list(res.params.index) if res is not None else []
                enc_levels, dec_levels = sorted(df["enc"].unique()), sorted(df["dec"].unique())
                vecs = {
                    "C4": _contrast(names, "enc", enc_levels, {"dense1"}) if res is not None else None,
                    "C5": _contrast(names, "dec", dec_levels, {d for d in dec_levels if _deep_conv(d)})
                    if res is not None
                    else None,
                }
                for key, col in (("enc", "log_pe"), ("dec", "log_pd")):
                    if model != "families":
                        vecs[key] = (np.asarray(names) == col).astype(float) if col in names else None
                for key, vec in vecs.items():
                    note = (
                        notes
                        if vec is not None or res is None
                        else [*notes, f"{QUANTITIES[key]}: not estimable"]
                    )
                    rows.append(_row(arm, response, model, QUANTITIES[key], res, vec, len(df), note))
        df = _frame(part, RESPONSES[0])
        for role in ("encoder", "decoder") if len(df) else ():
            r2 = identifiability(df, role)
            note = "not identified: a function of family × latent" if r2 >= IDENTIFIED_BELOW else "identified"
            rows.append({
                "arm": arm, "response": DESIGN, "model": "log params ~ family × latent",
                "quantity": f"R² of log params/{role}", "estimate": r2, "ci_low": np.nan, "ci_high": np.nan,
                "p_value": np.nan, "n": len(df), "r2": r2, "se": np.nan, "note": note,
            })  # fmt: skip
            col = {"encoder": "log_pe", "decoder": "log_pd"}[role]
            spread = float(df.groupby("latent")[col].agg(lambda v: v.max() - v.min()).max())
            matched = "matched by design" if spread <= MATCHED_SPREAD else "not matched"
            rows.append({
                "arm": arm, "response": DESIGN, "model": "max over latent sizes of (max − min) log params",
                "quantity": f"spread of log params/{role}", "estimate": spread, "ci_low": np.nan,
                "ci_high": np.nan, "p_value": np.nan, "n": len(df), "r2": np.nan, "se": np.nan, "note": matched,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _ci(r) -> str:
    return f"{r['estimate']:.3g} nats [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"


def _verdict(raw: pd.Series, ctl: pd.Series) -> str:
    """What the capacity control does to a family effect (negative = the family named first is better):
    "survives" and "does not survive" only of an effect there was, an interval below 0 by family alone."""
    below = np.isfinite(raw["estimate"]) and raw["ci_high"] < 0
    if ctl["ci_high"] < 0:
        if below:
            return "the family effect survives the capacity control"
        return (
            "a family effect shows only with the capacity terms (by family alone its interval is not below 0)"
        )
    if ctl["ci_low"] > 0:
        if below:
            return "with capacity controlled the family effect reverses"
        return "the family is worse, by family alone and with the capacity terms (both intervals above 0)"
    if below:
        return "the family effect does not survive the capacity control (its interval contains 0)"
    return "no family effect to control: its interval is not below 0 by family alone, and contains 0 with the capacity terms"


def summary(table: pd.DataFrame) -> list[str]:
    """One sentence per arm (and protocol group) × response × claim (C4, C5): the family effect without
    and with the capacity terms, and whether it survives the control (its interval stays entirely below
    0); first, per arm, whether capacity is identified or matched by design."""
    out = []
    if not len(table):
        return ["No run has test metrics and parameter counts: no capacity model."]
    groups = [c for c in table.columns if c not in COLUMNS]  # protocol-group columns (rank.per_protocol)
    if groups:  # one model per protocol group: its columns join the arm that names each sentence
        label = table[groups].astype(str).apply(lambda r: " ".join(f"{k}={v}" for k, v in r.items()), axis=1)
        table = table.assign(arm=np.where(table["arm"].eq("all"), label, label + " " + table["arm"]))
    design = table[table["response"].eq(DESIGN)]
    matched_arms = set()
    for arm, g in design.groupby("arm", sort=False):
        r2 = dict(zip(g["quantity"], g["estimate"], strict=True))
        spread = {q: r2.pop(q) for q in list(r2) if q.startswith("spread")}
        where = "" if arm == "all" else f" ({arm})"
        txt = ", ".join(f"{q.split('/')[-1]} {v:.4f}" for q, v in r2.items())
        if spread and all(v <= MATCHED_SPREAD for v in spread.values()):
            widest = max(spread.values())
            matched_arms.add(arm)
            out.append(
                f"Capacity{where} is matched by design: at each latent size every family of a role has the "
                f"same parameter count within a spread of {np.expm1(widest):.1%} (widest), so the family "
                f"contrasts of the claims check are not parameter-count effects (compute per image is not "
                f"matched: FLOPs and wall time still differ by family); the regression below has no "
                f"capacity variation to use and is a description only."
            )
        elif all(v >= IDENTIFIED_BELOW for v in r2.values()):
            out.append(
                f"Identifiability{where}: log parameter counts are a function of family × latent size (R² "
                f"{txt}), so the capacity slopes below are two degrees of freedom of a family × latent "
                f"interaction, not capacity: the model is a description only. Capacity is controlled by "
                f"design in the capacity-matched grid (experiment=capacity_matched)."
            )
        else:
            states = ", ".join(
                f"{q.split('/')[-1]} {v:.4f} ({'not ' if v >= IDENTIFIED_BELOW else ''}identified)"
                for q, v in r2.items()
            )
            out.append(
                f"Identifiability{where}: R² of log parameter counts on family × latent size: {states}."
            )
    for (arm, response), g in table[~table["response"].eq(DESIGN)].groupby(["arm", "response"], sort=False):
        for claim in ("C4", "C5"):
            q = g[g["quantity"].eq(QUANTITIES[claim])].set_index("model")
            if not {"families", "families + capacity"} <= set(q.index):
                continue
            raw, ctl = q.loc["families"], q.loc["families + capacity"]
            where = f"{claim} ({response}{'' if arm == 'all' else ', ' + arm}): {CONTRASTS[claim]}"
            if not np.isfinite(ctl["estimate"]):
                out.append(f"{where}: not estimable ({ctl['note']}).")
                continue
            raw_txt = _ci(raw) if np.isfinite(raw["estimate"]) else "not estimable"
            if arm in matched_arms:
                out.append(
                    f"{where}: {raw_txt} by family alone; with parameter counts matched by design the "
                    f"capacity terms have nothing to control ({_ci(ctl)} with them): no survival is claimed."
                )
                continue
            if "left out" in ctl["note"] or "no capacity term" in ctl["note"]:
                out.append(
                    f"{where}: {raw_txt} by family alone; the capacity control cannot be fitted in full in this "
                    f"design (parameter counts are a function of the other terms), so whether the family "
                    f"effect survives it is not tested here."
                )
                continue
            verdict = _verdict(raw, ctl)
            out.append(
                f"{where}: {raw_txt} without capacity terms, {_ci(ctl)} with log parameter counts "
                f"(n = {int(ctl['n'])}, R² = {ctl['r2']:.3g}): {verdict}."
            )
    return out or ["No family contrast could be estimated (one encoder or decoder family)."]
