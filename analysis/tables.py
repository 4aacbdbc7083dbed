"""Every analysis table by name (rankings, seed aggregates, win rates, collapse counts, cut-off
sensitivity, the claims check), computed from the run table by ``analysis.rank``, ``analysis.collapse``
and ``analysis.claims``."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from analysis import capacity, claims, collapse, design, design_sensitivity, mi, rank  # noqa: E402
from analysis.plotting import (  # noqa: E402
    collapse_factors,
)

# ---------------------------------------------------------------- tables and the command

RANK_DISPLAY = [
    "rank", "run_name", "label", "latent_dim", "family/encoder", "family/decoder", "seed",
    "test/distortion", "test/rate", "test/neg_elbo", "test/iwae_nll", "test/fid_prior", "test/kid_prior",
    "test/fid_recon", "test/active_units", "collapsed", "latent/linear_probe_acc",
]  # fmt: skip
SEED_METRICS = [
    "test/distortion", "test/rate", "test/neg_elbo", "test/iwae_nll", "test/active_units",
    mi.MI, mi.CEILING, "latent/linear_probe_acc", "latent/knn_acc", "latent/pca_silhouette", "test/psnr",
    "test/fid_prior", "test/kid_prior", "test/fid_recon",
]  # fmt: skip
SHORT = {"latent_dim": "latent", "family/encoder": "encoder", "family/decoder": "decoder"}


def _short(factor: str) -> str:
    return SHORT.get(factor, factor.replace(".", "_").replace("/", "_"))


def build_tables(runs: pd.DataFrame) -> dict[str, Callable[[], pd.DataFrame]]:
    """Every analysis table, by name, as a thunk (``write_all`` computes each one, guarded). Every
    table but ``runs`` and the claims (which split by dataset and ablation arm themselves) is computed
    per protocol group (:func:`analysis.rank.per_protocol`) and carries the group's columns."""
    runs = runs.sort_values("run_name").reset_index(drop=True) if "run_name" in runs.columns else runs
    t: dict[str, Callable[[], pd.DataFrame]] = {"runs": lambda: runs}

    def grouped(table: Callable[[pd.DataFrame], pd.DataFrame], across=()) -> Callable[[], pd.DataFrame]:
        return lambda: rank.per_protocol(table, runs, tuple(across))

    for crit in rank.CRITERIA:

        def ranked(part: pd.DataFrame, crit=crit) -> pd.DataFrame:
            r = rank.ranking(part, crit)
            shown = ([rank.FID_CLASSIFIER] if crit == "fid" and rank.several_classifiers(r) else []) + RANK_DISPLAY
            return r[[c for c in shown if c in r.columns]]

        t[f"ranking_{crit}"] = grouped(ranked)
    t["seed_aggregates"] = grouped(
        lambda part: mi.flag_aggregates(
            rank.aggregate_seeds(part, [m for m in SEED_METRICS if m in part.columns])
        )
    )
    for by in rank.BASE_CONFIG:
        t[f"win_rates_{_short(by)}"] = grouped(
            lambda part, by=by: rank.base_rates(part, rank.top_set(part), by)
        )
    t["collapse_counts"] = grouped(collapse.collapse_table)
    for factor in collapse_factors(runs) if len(runs) else rank.BASE_CONFIG:
        t[f"collapse_by_{_short(factor)}"] = grouped(
            lambda part, f=factor: collapse.collapse_by_factor(part, f), across=(factor,)
        )
    for by in rank.BASE_CONFIG:
        t[f"cutoff_sensitivity_{_short(by)}"] = grouped(
            lambda part, by=by: rank.cutoff_sensitivity(part, "recon", by)
        )
    t["claims"] = lambda: claims_table(runs)
    t["capacity"] = grouped(capacity.capacity_table)
    if design.has_design(runs):  # a norm axis or residual blocks (experiment=design)
        t["design"] = grouped(design.design_table)
        t["design_sensitivity"] = grouped(design_sensitivity.leave_one_out)
    if len(datasets(runs)) > 1:
        t["claims_by_dataset"] = lambda: claims_by_dataset(t["claims"]())
    if "seed" in runs.columns and runs["seed"].nunique() > 1:  # (claims_by_seed keeps the seeds with ok runs)
        t["claims_by_seed"] = lambda: claims_by_seed(runs, t["claims"]())
    return t


def datasets(runs: pd.DataFrame) -> list[str]:
    """The datasets (``data.name``) of the runs, sorted."""
    if "data.name" not in runs.columns or not len(runs):
        return []
    return sorted(runs["data.name"].dropna().astype(str).unique())


def claims_table(runs: pd.DataFrame, like: pd.DataFrame | None = None) -> pd.DataFrame:
    """The claims check. Where the sweep holds ablation arms (config keys that tell apart runs of one
    label, e.g. ``loss.reduction=sum|paper``), C1–C6 are decided within each arm, since pooling two
    different losses would mix two experiments; the ablation verdict compares the arms. Runs of
    different datasets (``data.name``) are never pooled: each dataset gets its own claims check, its
    arm prefixed with ``data.name=<dataset>``. An ``arm`` column names the arm (``all`` for the
    verdicts over the whole sweep). ``like``: the sweep whose datasets and arms label the rows (``runs``
    a part of it, e.g. one seed's runs, that may lack a dataset or an arm: its rows keep their labels)."""
    like = runs if like is None else like
    if len(names := datasets(like)) > 1:
        frames = []
        for name in names:
            part = runs[runs["data.name"].astype(str).eq(name)]
            if not len(part):
                continue
            part = claims_table(part, like[like["data.name"].astype(str).eq(name)])
            prefix = f"data.name={name}"
            part["arm"] = [prefix if a == "all" else f"{prefix} {a}" for a in part["arm"]]
            frames.append(part)
        return pd.concat(frames, ignore_index=True)
    verdicts = claims.check_claims(runs)
    arms = rank.id_columns(like) if len(like) else []
    if not arms:
        return claims.verdicts_table(verdicts).assign(arm="all")
    frames = []
    for values, part in runs.groupby(arms, sort=True):
        arm = rank.arm_name(arms, values)
        per_arm = [v for v in claims.check_claims(part) if v.claim != "ablation"]
        frames.append(claims.verdicts_table(per_arm).assign(arm=arm))
    across = [v for v in verdicts if v.claim == "ablation"]
    if across:
        frames.append(claims.verdicts_table(across).assign(arm="all"))
    return pd.concat(frames, ignore_index=True)


NO_RUNS = "no runs"  # a seed without ok runs of a claim's dataset or arm


def claims_by_seed(runs: pd.DataFrame, every: pd.DataFrame) -> pd.DataFrame:
    """How far each verdict rests on the seeds: each claim's deciding verdict and statistic on the
    configuration means of all seeds (``every``, the claims table) beside the same check on each seed's
    runs alone (the seeds with ok runs; rows labelled by the whole sweep's datasets and arms, ``no runs``
    where a seed has none of one), one row per claim (and arm), and ``same_on`` the seeds alone that
    give the all-seeds verdict among those with runs ("2 of 3"). A seed alone is the same test on one
    replicate of each configuration."""
    keys = ["claim", "arm"]

    def deciding(table: pd.DataFrame) -> pd.DataFrame:
        return table[table["decides"].astype(bool)].drop_duplicates(keys).set_index(keys)

    out = deciding(every)[["verdict", "statistic"]].copy()
    ok = runs[runs["status"].astype(str).eq("ok")] if "status" in runs.columns else runs
    seeds = sorted({int(x) for x in ok["seed"].dropna()})
    for seed in seeds:
        alone = deciding(claims_table(runs[runs["seed"].eq(seed)], like=runs))
        out[f"seed {seed}"] = alone["verdict"].reindex(out.index).fillna(NO_RUNS)
        out[f"seed {seed} statistic"] = alone["statistic"].reindex(out.index)
    cols = [f"seed {seed}" for seed in seeds]
    have = out[cols].ne(NO_RUNS)
    same = (out[cols].eq(out["verdict"], axis=0) & have).sum(axis=1)
    out["same_on"] = [f"{n} of {m}" for n, m in zip(same, have.sum(axis=1), strict=True)]
    return out.rename(columns={"verdict": "all seeds", "statistic": "all seeds statistic"}).reset_index()


def claims_by_dataset(claims: pd.DataFrame) -> pd.DataFrame:
    """The verdicts of a per-dataset claims table side by side: one row per claim (its deciding row; and
    ablation arm), one column per dataset."""
    if "decides" in claims.columns:  # each claim's verdict is on its deciding row
        claims = claims[claims["decides"].astype(bool)]
    parts = claims["arm"].str.extract(r"^data\.name=(\S+)\s*(.*)$")
    table = claims.assign(dataset=parts[0], arm=parts[1].replace("", "all"))
    wide = table.pivot_table(index=["claim", "arm"], columns="dataset", values="verdict", aggfunc="first")
    order = {c: i for i, c in enumerate(dict.fromkeys(claims["claim"]))}
    wide = wide.reset_index().sort_values(
        ["claim", "arm"], key=lambda s: s.map(order) if s.name == "claim" else s
    )
    wide.columns.name = None
    return wide.reset_index(drop=True)
