"""The architecture claims, C4 and C5 (docs/protocol.md "Claims check"), each as the paper states it.

* C4 "one-layer dense encoders are over-represented among the best": dense1 against **each** other
  encoder family, matched on (latent, decoder) (:func:`analysis.contrasts.paired_test`), decided jointly
  by intersection-union (:func:`decide_joint`: dense1 must beat every family); the paper's top-25 % lift
  is a supporting row.
* C5a "conv decoders beat dense ones": conv against dense decoders, matched on (latent, encoder); C5b
  "conv decoders benefit from several blocks": conv decoders of depth >= 2 against conv1, matched on
  (latent, encoder); the lift of deep conv decoders (the paper's figure) is a supporting row.

Every contrast is tested on the deciding metric (distortion) and on the likelihood (supporting rows);
every row is a member of the claims family that :mod:`analysis.claims` Holm-adjusts.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import contrasts, permutation, rank
from analysis.claim_stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Verdict,
    across,
    by_test,
    design,
    directional,
    fmt3,
    kind_depth,
    lift,
    n_runs,
    numeric,
    p_fmt,
    result,
    robust_columns,
    row,
    seed_text,
    strata,
)

C5_MIN_DEPTH = 2  # "several blocks"
DECIDING_METRIC = "test/distortion"  # the paper ranks and compares by reconstruction
METRICS = {"test/distortion": "distortion", "test/neg_elbo": "-ELBO", "test/iwae_nll": "IWAE NLL"}


def lift_test(ranked: pd.DataFrame, member_of, factor: str, **kw) -> permutation.Result:
    """The lift of ``member_of`` rows in the top ``TOP_FRACTION`` of the configuration table ``ranked``
    by distortion; labels shuffled within latent sizes, configurations resampled within latent size ×
    ``factor`` (``kw``: ``n_perm``, ``n_boot``, ``gen``)."""
    d = design(ranked)
    return permutation.lift(
        d["_seed"], numeric(d, "test/distortion"), member_of(d).to_numpy(dtype=float),
        strata(d, ["latent_dim"]), d["_cluster"], permutation.codes(d, ["latent_dim", factor]),
        fraction=rank.TOP_FRACTION, side="greater", **{"gen": permutation.rng(), **kw},
    )  # fmt: skip


def _lift_row(claim, statement, what, member_of, factor, u, seeds, note) -> Verdict:
    """The paper's figure for C4/C5: the lift of ``member_of(rows)`` in the top 25 % of configurations,
    against 1 (a supporting row)."""
    f = rank.TOP_FRACTION
    part = f"lift in the top {f:.0%}"
    test = (
        f"The lift of {what} in the top {f:.0%} of configurations by distortion (share of the top set / "
        f"share of all); two-sided permutation (labels shuffled within latent sizes: lift = 1; the claim says > 1)."
    )
    ranked = u[rank.ranked_mask(u, "recon")]
    members = member_of(ranked) if len(ranked) else pd.Series(dtype=bool)
    if not len(ranked) or not members.any() or members.all():
        why = f"{what}: the factor has one level among the ranked configurations{note}"
        return row(claim, part, DECIDING_METRIC, statement, test, why, null=1.0, side="above")
    per_seed = {seed: lift(g, member_of(g)) for seed, g in seeds}
    est = across(per_seed, 1.0, (0.0, math.inf))
    robust = robust_columns(est, lambda a, b: directional(a, b, 1.0, "above"))
    res = lift_test(ranked, member_of, factor)
    why = f"lift = {res.text()}; {seed_text(est, 'lift')}{note}."
    return result(
        claim, part, DECIDING_METRIC, statement, test, res, by_test(res, 1.0, "above"), why,
        n_runs=n_runs(ranked), in_family=True, null=1.0, side="above", **robust,
    )  # fmt: skip


def _contrast_rows(claim, statement, factor, claimed, others, cells, u, note) -> list[Verdict]:
    """One matched contrast per (other group, metric): ``other − claimed`` over ``cells``, positive when
    the claimed families are better (lower loss); the deciding metric's rows first."""
    out = []
    for label, other in others.items():
        for metric, mname in METRICS.items():
            part = f"{'+'.join(sorted(claimed))} vs {label}"
            test = (
                f"Mean over matched ({', '.join(cells)}) cells of {mname}({label}) − "
                f"{mname}({'+'.join(sorted(claimed))}); two-sided sign-flip test (each cell's gap flipped at "
                f"random: 0; the claim says > 0)."
            )
            used = contrasts.matched(u, metric, factor, claimed, other, cells)  # the configurations it uses
            res = contrasts.paired_test(used, metric, factor, other, cells, gen=permutation.rng())
            if not res.n_runs:
                why = f"no ({', '.join(cells)}) cell holds both {part.replace(' vs ', ' and ')} with a {mname}{note}"
                out.append(row(claim, part, metric, statement, test, why, null=0.0, side="above"))
                continue
            why = f"{mname} gap (nats) = {res.text()}{note}."
            out.append(result(
                claim, part, metric, statement, test, res, by_test(res, 0.0, "above"), why,
                n_runs=n_runs(used), in_family=True, null=0.0, side="above",
            ))  # fmt: skip
    return out


def _families(u: pd.DataFrame, col: str) -> list[str]:
    return sorted(u[col].astype(str).unique()) if col in u.columns and len(u) else []


def c4(u, seeds, note) -> list[Verdict]:
    statement = (
        "One-layer dense encoders are over-represented among the best (small dense encoders encode best)."
    )
    fams = _families(u, "family/encoder")
    others = {f: {f} for f in fams if f != "dense1"}
    rows = [_lift_row("C4", statement, "dense1 encoders", _dense1, "family/encoder", u, seeds, note)]
    if "dense1" not in fams or not others:
        why = f"the encoder families present ({', '.join(fams) or 'none'}) do not include dense1 and another{note}"
        return [
            *rows,
            row("C4", "dense1 vs every family", DECIDING_METRIC, statement, "", why, decides=True),
        ]
    rows += _contrast_rows(
        "C4", statement, "family/encoder", {"dense1"}, others, ["latent_dim", "family/decoder"], u, note
    )
    test = (
        "Intersection-union over the distortion contrasts dense1 vs each other encoder family: reproduced "
        "if every one is (Holm p < alpha, dense1 better), not reproduced if any is not (Holm p < alpha, "
        "dense1 worse), else inconclusive; statistic: the smallest gap, p: the largest; when not reproduced, "
        "statistic, interval and p are those of the not-reproduced contrast with the smallest gap."
    )
    rows.append(
        row(
            "C4",
            "dense1 vs every family",
            DECIDING_METRIC,
            statement,
            test,
            note,  # the notes on excluded and pooled runs; _adjust puts the contrasts before them
            decides=True,
            null=0.0,
            side="above",
        )
    )
    return rows


def c5(u, seeds, note) -> list[Verdict]:
    fams = _families(u, "family/decoder")
    kind, depth = kind_depth(pd.Series(fams, dtype=object))
    conv = {f for f, k in zip(fams, kind, strict=True) if k == "conv"}
    dense = {f for f, k in zip(fams, kind, strict=True) if k == "dense"}
    deep = {f for f, k, n in zip(fams, kind, depth, strict=True) if k == "conv" and n >= C5_MIN_DEPTH}
    cells = ["latent_dim", "family/encoder"]
    a = "Conv decoders decode better than dense decoders."
    b = "Conv decoders benefit from several convolutional blocks (depth >= 2 against one)."
    rows = [_lift_row(
        "C5b", b, f"conv decoders of depth >= {C5_MIN_DEPTH}", _deep_conv, "family/decoder", u, seeds, note,
    )]  # fmt: skip
    rows += _contrast_rows(
        "C5a", a, "family/decoder", conv or {"conv"}, {"dense": dense or {"dense"}}, cells, u, note
    )
    rows += _contrast_rows(
        "C5b", b, "family/decoder", deep or {"conv2"}, {"conv1": {"conv1"}}, cells, u, note
    )
    for r in rows:  # the distortion contrast decides each
        r.decides = r.part != rows[0].part and r.metric == DECIDING_METRIC
    return rows


def _dense1(df: pd.DataFrame) -> pd.Series:
    if "family/encoder" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["family/encoder"].astype(str).eq("dense1")


def _deep_conv(df: pd.DataFrame) -> pd.Series:
    if "family/decoder" not in df.columns:
        return pd.Series(False, index=df.index)
    kind, depth = kind_depth(df["family/decoder"])
    return kind.eq("conv") & (depth >= C5_MIN_DEPTH)


def _largest(ps: list) -> float | None:
    return None if any(p is None for p in ps) else max(ps)


def decide_joint(verdicts: list[Verdict]) -> None:
    """C4's joint row (intersection-union) from its Holm-decided distortion contrasts: reproduced if
    dense1 beats every family, not reproduced if any contrast is, else inconclusive; its statistic is the
    smallest gap, its p the largest (the intersection-union test's); when not reproduced, its statistic,
    interval and p are those of the not-reproduced contrast with the smallest gap."""
    for joint in [v for v in verdicts if v.claim == "C4" and v.decides]:
        parts = [  # every family's contrast, defined or not: an undefined one leaves a family untested
            v
            for v in verdicts
            if v.claim == "C4" and not v.decides and v.metric == DECIDING_METRIC and " vs " in v.part
        ]
        defined = [v for v in parts if v.statistic is not None]
        if not parts:  # no dense1 encoder or no other family: c4 wrote why
            continue
        if len(defined) < len(parts):
            missing = ", ".join(v.part for v in parts if v.statistic is None)
            joint.why = f"{missing}: no matched cell, dense1 is not compared with every family{joint.why}."
            continue
        verdicts_ = [v.verdict for v in defined]
        joint.verdict = (
            NOT_REPRODUCED if NOT_REPRODUCED in verdicts_
            else REPRODUCED if all(x == REPRODUCED for x in verdicts_) else INCONCLUSIVE
        )  # fmt: skip
        # not reproduced: every number from one contrast, the not-reproduced one with the smallest gap
        against = [v for v in defined if v.verdict == NOT_REPRODUCED]
        worst = min(against or defined, key=lambda v: v.statistic)
        joint.statistic, joint.ci_low, joint.ci_high = worst.statistic, worst.ci_low, worst.ci_high
        if against:
            joint.p_value, joint.p_holm, joint.p_bound = worst.p_value, worst.p_holm, worst.p_bound
            joint.tail = worst.tail
        else:
            # the intersection-union p: the largest, undefined where a contrast has none
            joint.p_value = _largest([v.p_value for v in defined])
            joint.p_holm = _largest([v.p_holm for v in defined])
            joint.p_bound = all(v.p_bound for v in defined)
        # n of the contrast whose gap is the statistic (an incomplete grid gives the contrasts other n)
        joint.n_configs, joint.n_runs = worst.n_configs, worst.n_runs
        joint.why = (
            "; ".join(
                f"{v.part}: {fmt3(v.statistic)} [{fmt3(v.ci_low)}, {fmt3(v.ci_high)}] nats, Holm p "
                f"{p_fmt(v.p_holm, v.p_bound)} ({v.verdict})"
                for v in defined
            )
            + f"{joint.why}."
        )
