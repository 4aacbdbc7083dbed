"""What the design grid can detect, stated before it trains (docs/protocol.md "Design choices").

The design study (``analysis.design``) decides each question by a 1-df contrast of one OLS model on 27
cells with 8 error df. How large a gap it can find depends on the error σ (the encoder × decoder × norm
interaction plus one seed's noise), unknown until the grid trains. Two proxies bracket it, both read
from the committed reproduction at the design's latent size (50):

* **seed noise** (a floor: one seed per cell carries at least this): the pooled within-configuration
  standard deviation of distortion over its seeds;
* **interaction** (conservative): the residual standard deviation of the configurations' seed-mean
  distortion after encoder and decoder main effects, over the 5 × 5 families: the size of a two-way
  interaction, where the design's error term is a three-way one.

Each question's standard error is σ × its factor √(c (XᵀX)⁻¹ cᵀ), c the contrast's weights through the
complete grid's design matrix (``design.design_matrix``); its power at a gap δ is that of the two-sided
t-test on the error df, P(|T| > t_crit) with T noncentral t (nc = δ/SE); the minimum detectable gap is
the δ of 80 % power, at α = 0.05 (one question alone) and at α = 0.05/10 (the Holm family's first step:
a question whose raw p is the family's largest still needs only α, so this is the worst case).

    python -m analysis.design_power results/examples/reproduce     # the table, markdown
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis import design
from analysis.claim_stats import ALPHA
from analysis.report import markdown_table

LATENT = 50  # the design grid's latent size (conf/experiment/design.yaml)
POWER = 0.80
LEVELS = {"enc": [design.CONV, design.DENSE, design.RES], "dec": [design.CONV, design.DENSE, design.RES],
          "norm": ["none", "batch", "layer"]}  # fmt: skip
DIST = "test/distortion"


def se_factors() -> pd.DataFrame:
    """One row per question of the design's family (kind, part) on the complete 27-cell grid: its
    standard error in units of σ, and the error df."""
    g = design.grid(pd.DataFrame({k: v * 9 for k, v in LEVELS.items()}))  # every cell of the levels
    x = design.design_matrix(g, LEVELS)
    inv = np.linalg.pinv(x.T @ x)
    df = len(g) - np.linalg.matrix_rank(x)
    rows = []
    for kind, part, _, _, w in design.questions(g):
        lin = w @ x
        rows.append({"kind": kind, "part": part, "se_factor": float(np.sqrt(lin @ inv @ lin)), "df": int(df)})
    return pd.DataFrame(rows)


def power(delta: float, se: float, df: int, alpha: float) -> float:
    """Power of the two-sided t-test on ``df`` at a true contrast ``delta`` with standard error ``se``."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    # the lower tail as P(T_{-nc} > crit), the same by symmetry: scipy's nct.cdf is NaN there at large nc
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def detectable(se: float, df: int, alpha: float, target: float = POWER) -> float:
    """The gap δ > 0 the test detects with power ``target``."""
    return float(optimize.brentq(lambda d: power(d, se, df, alpha) - target, 1e-9 * se, 20 * se))


def sigmas(runs: pd.DataFrame) -> dict[str, float]:
    """The two proxies of the design's error σ (module docstring) from a run table of the reproduction:
    ok runs at ``LATENT`` with a finite distortion."""
    ok = runs[runs["status"].astype(str).eq("ok") & runs["latent_dim"].eq(LATENT)]
    ok = ok[np.isfinite(pd.to_numeric(ok[DIST], errors="coerce"))]
    by = ok.groupby(["family/encoder", "family/decoder"])[DIST]
    n, var = by.size(), by.var(ddof=1)
    several = n > 1
    if not several.any() or len(n) < 9:  # 9: 5 + 5 − 1 main-effect terms leave no df below
        raise ValueError(
            f"{len(n)} configurations at latent {LATENT}, {int(several.sum())} with several seeds: the proxies "
            f"need the reproduction's grid there with several seeds; valid: results/examples/reproduce"
        )
    seed = math.sqrt(float(((n[several] - 1) * var[several]).sum() / (n[several] - 1).sum()))
    means = by.mean().rename("y").reset_index()
    fit = design.smf.ols("y ~ C(Q('family/encoder')) + C(Q('family/decoder'))", data=means).fit()
    return {"seed noise": seed, "interaction": math.sqrt(float(fit.scale))}


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Each question × σ proxy: σ, the standard error, and the gap detectable with 80 % power at
    α = 0.05 and at the family's worst case α = 0.05/10."""
    factors, sig = se_factors(), sigmas(runs)
    family = len(factors)
    rows = []
    for _, q in factors.iterrows():
        for name, s in sig.items():
            se = s * q["se_factor"]
            rows.append({
                "kind": q["kind"], "part": q["part"], "sigma_from": name, "sigma": s, "se": se, "df": q["df"],
                "detectable_alone": detectable(se, q["df"], ALPHA),
                "detectable_holm": detectable(se, q["df"], ALPHA / family),
            })  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.design_power", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="the committed reproduction, e.g. results/examples/reproduce")
    args = p.parse_args(argv)
    path = args.sweep / "runs.csv"
    if not path.is_file():
        print(f"error: {path} does not exist; valid: a report directory with runs.csv, e.g. "
              "results/examples/reproduce", file=sys.stderr)  # fmt: skip
        return 2
    try:
        out = table(pd.read_csv(path)).round(3)
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
