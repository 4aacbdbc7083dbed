"""The analysis report of a sweep: ``report.md`` and a self-contained ``report.html``.

``python -m analysis.figures <sweep dir>`` calls :func:`write_report` after drawing the figures and
computing the tables; both files hold every figure, every table, one or two sentences on how each was
computed (criterion, cut-off, interval method, thresholds with their values), the claims check, the run
counts by status and the skipped files. The HTML embeds the figures as base64 PNG, so it can be mailed
as one file. Nothing in either file depends on the time or the machine, so the same inputs give the
same bytes.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import budget, capacity, claims, rank
from analysis.collect import Sweep
from sweep.results import atomic_write_bytes
from sweep.thresholds import THRESHOLDS

PCT = f"{rank.TOP_FRACTION:.0%}"
CUTS = ", ".join(f"{c:.0%}" for c in rank.CUTOFFS)
CI = f"{rank.CI_LEVEL:.0%}"
TH = THRESHOLDS
FLOOR = (
    f"collapsed = no active unit (Var_x μ_d ≤ {TH['active_unit_threshold']:g}) and rate < "
    f"{TH['collapse_rate_threshold']:g} nats; paper_collapsed = rate < {TH['paper_collapse_threshold']:g} nats"
)
FID_CAVEAT = (
    "These FIDs are not comparable with Inception-based FIDs of natural images (another feature "
    "network, 128-d features, 28×28 greyscale images), nor across datasets or classifiers (the "
    "classifier's checksum is in test/fid_classifier); compare runs of one dataset only."
)
# How each figure was computed (keys: figure names of analysis.figures.FIGURES).
FIGURE_NOTES = {
    "search_front": (
        "Optuna search (study.db). Two objectives: every finished trial in the objective plane, the "
        "Pareto front (trials no other trial beats on both) joined in red. One objective: each trial's "
        "value and the best so far."
    ),
    "fig1_rate_sorted": (
        "Paper Fig. 1. Test-set KL term (rate, nats per image) of every evaluated run, ascending, log axis; "
        "colour = collapse state ({floor}). Rates at or below {rate_floor:g} nats are drawn at that floor."
    ),
    "fig2_recon_sorted": (
        "Paper Fig. 2. Test-set reconstruction term (distortion, nats per image; the paper's criterion) of "
        "every evaluated run, ascending (bars, coloured by collapse state), with its KL on the top log axis."
    ),
    "fig3_top_recon_vs_kl": (
        "Paper Fig. 3. The top {pct} of ok runs ranked by distortion (ties by run name; size "
        "ceil({top:g} × n ranked)): distortion against KL (log axis); colour = encoder, marker = decoder; "
        "Spearman's ρ over those runs in the subtitle (claim C3 expects it negative)."
    ),
    "fig4_top_counts": (
        "Paper Fig. 4 with base rates. Per latent size, encoder and decoder: how many runs of the top {pct} "
        "it has, beside the count expected if membership ignored it (its share of ranked runs × size of the "
        "top set); n under each label = ranked runs of that value. Lift and hypergeometric p-values: the "
        "win-rate tables."
    ),
    "fig5_top_by_latent": (
        "Paper Fig. 5. Top-{pct} counts of each encoder (top) and decoder (bottom) within each latent size; "
        "black ticks: the count expected from that family's share of the ranked runs of that latent size."
    ),
    "fig6_pca_top25": (
        "Paper Fig. 6. For each run of the top 25 % by distortion (best first): the stored test latent means "
        "μ projected on their first two principal components (exact SVD, each component's sign fixed so its "
        "largest loading is positive), coloured by digit; axis labels give each component's share of variance."
    ),
    "fig7_pca_top50": "Paper Fig. 7. As Fig. 6 for the top 50 %.",
    "rate_distortion": (
        "Rate (log axis) against distortion for every evaluated run, coloured by collapse state ({floor})."
    ),
    "iwae_heatmap": (
        "IWAE estimate of −log p(x) (K importance samples, stored per run in test/iwae_k), mean over the "
        "seeds of each configuration, encoder × decoder, one panel per latent size. Bernoulli likelihood "
        "only: bce runs have no normalised likelihood, and the figure says so when no run has a value."
    ),
    "active_units": (
        "Active units (Var_x μ_d > {active:g} over the test set, Burda et al. 2016) of each evaluated run "
        "against its latent size, with the mean per latent size and the line y = x (every unit active)."
    ),
    "fid_distortion": (
        "Sample quality against reconstruction: FID of prior samples (decoder means, count in "
        "test/fid_samples) against the test images, in the feature space of the harness's own CNN "
        "classifier of the dataset (sweep/quality.py), log axis, against test distortion; one panel per "
        "dataset; colour = collapse state ({floor}). {fid_caveat}"
    ),
    "claims_budget": (
        "Verdicts against the training budget (analysis/budget.py): C1 (share of runs whose validation KL "
        "is below the paper's floor), C3 (rho in the top {pct}) and C4, C5 (lifts in the top {pct}) "
        "recomputed at every epoch from each ok run's validation reconstruction and KL (epochs.parquet), "
        "with the claims check's all-runs tests; dots coloured by verdict with the bootstrap interval, "
        "stars the stored test-split evaluation (best-by-validation checkpoint); dashed: the null value, "
        "dotted: C1's band. The note says at which epoch each verdict settles."
    ),
    "collapse_by_factor": (
        "Share of evaluated runs flagged collapsed ({floor}) per latent size, encoder, decoder and any "
        "varying ablation key, with 95 % Wilson score intervals; labels give collapsed/evaluated."
    ),
}
# How each table was computed (keys: table names, or their prefix before the factor).
TABLE_NOTES = {
    "search_trials": "Every trial of the Optuna study (study.db): state, objective values, sampled parameters.",
    "search_importance": (
        "Optuna's fANOVA importance of each searched parameter for each objective, over finished trials "
        "(random forest with a fixed seed)."
    ),
    "runs": (
        "Every run (any status): run.parquet joined with eval.parquet. The CSV has every column; the "
        "markdown and this report show the main ones."
    ),
    "ranking_recon": (
        "Ok runs with a finite test distortion, ascending (the paper's criterion), ties by run name; "
        "rank 1 = best."
    ),
    "ranking_neg_elbo": "As the reconstruction ranking, by test −ELBO (distortion + rate), nats per image.",
    "ranking_iwae": "As the reconstruction ranking, by test IWAE NLL (bernoulli likelihood only; empty otherwise).",
    "ranking_fid": (
        "As the reconstruction ranking, by the FID of prior samples (test/fid_prior; lower = samples "
        "closer to the test images), with the KID and the FID of reconstructions beside it. {fid_caveat}"
    ),
    "claims_by_dataset": (
        "The verdicts of the claims check side by side, one column per dataset (data.name): each dataset's "
        "runs are checked on their own, never pooled."
    ),
    "seed_aggregates": (
        "One row per configuration (latent size × encoder × decoder, plus any other varying config key): "
        "mean ± {ci} Student-t half-width over its ok seeds, with n; no interval when n < 2."
    ),
    "win_rates": (
        "Top-{pct} membership by reconstruction per value: n_trained (ranked runs), n_top, share_top, "
        "share_trained, lift = share_top / share_trained (1 = chance) and the one-sided hypergeometric "
        "p-value of at least n_top members."
    ),
    "collapse_counts": (
        "Counts per latent size × encoder × decoder: runs, collapsed, partial (some but not all units active), "
        "paper_collapsed, and not evaluated (diverged, failed or no evaluation). {floor}."
    ),
    "collapse_by": (
        "Collapsed share of evaluated runs per value ({floor}), with its 95 % Wilson score interval; "
        "not-evaluated runs counted apart."
    ),
    "cutoff_sensitivity": (
        "The win-rate table recomputed for top sets of {cuts} by reconstruction, to show how much the "
        "'top' conclusions depend on the cut-off."
    ),
    "claims_budget": (
        "The budget figure's numbers: one row per claim × epoch on the validation split (split = val), "
        "then the test-split row; n_paper_collapsed / n_rate_collapsed count runs with validation KL "
        "below 1e-6 / 0.1 nats (the per-epoch record has no active-unit count, so the latter is the rate "
        "half of the `collapsed` flag)."
    ),
    "capacity": (
        "Architecture or capacity (analysis/capacity.py): OLS (statsmodels formula API) of test distortion "
        "and of test −ELBO on C(encoder family) + C(decoder family) + log params/encoder + log "
        "params/decoder + C(latent_dim) + C(seed), beside the same model without the two capacity terms; "
        "SEs cluster-robust by configuration. Rows: C4's contrast (dense1 − the mean of the other encoder "
        "families), C5's (conv decoders of depth >= 2 − the other decoders; nats, negative = better), and "
        "the capacity slopes, each with its 95 % interval; notes name the terms a design cannot separate "
        "(one seed, one latent size, parameter counts fixed by the family), left out rather than failing. "
        "A family effect survives the control if its interval with the capacity terms lies below 0."
    ),
    "claims": (
        "The claims check: one row per claim, the fields of analysis.claims.Verdict; statement, test and "
        "why are in the claims check above and in claims.csv / claims.md."
    ),
}
RUN_DISPLAY = [
    "run_name", "label", "status", "latent_dim", "family/encoder", "family/decoder", "seed", "epochs_done",
    "params/total", "test/distortion", "test/rate", "test/neg_elbo", "test/iwae_nll", "test/fid_prior", "test/active_units",
    "test/mutual_information", "collapsed", "partial", "paper_collapsed", "latent/linear_probe_acc",
    "latent/knn_acc", "test/psnr",
]  # fmt: skip
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px}
th{background:#f0f0f0}td{text-align:right}td:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#444}code{background:#f4f4f4;padding:0 3px}.wide{overflow-x:auto}"""


def note_for(name: str, notes: dict[str, str]) -> str:
    """The note of ``name`` (or of its longest matching prefix), filled with the constants."""
    key = max((k for k in notes if name == k or name.startswith(k + "_")), key=len, default=None)
    if key is None:
        return ""
    from analysis.plotting import RATE_FLOOR

    return notes[key].format(
        pct=PCT, top=rank.TOP_FRACTION, cuts=CUTS, ci=CI, floor=FLOOR, rate_floor=RATE_FLOOR,
        active=TH["active_unit_threshold"], fid_caveat=FID_CAVEAT,
    )  # fmt: skip


# ---------------------------------------------------------------- formatting


def fmt(value) -> str:
    """One table cell: 4 significant digits for floats (integral ones as integers), empty for null, one
    line for text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return " ".join(str(value).split())


def display(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The shown form of a table: the main columns of the run table; ``mean ± ci (n)`` cells for seed
    aggregates. CSV files keep the full numeric tables."""
    if name == "runs":
        return df[[c for c in RUN_DISPLAY if c in df.columns]]
    if name == "seed_aggregates":
        out = df[[c for c in df.columns if not re.search(r"/(mean|ci95|n)$", c)]].copy()
        for m in dict.fromkeys(c.rsplit("/", 1)[0] for c in df.columns if c.endswith("/mean")):
            cells = []
            for mean, ci, n in zip(df[f"{m}/mean"], df[f"{m}/ci95"], df[f"{m}/n"], strict=True):
                if not n:
                    cells.append("")
                else:
                    half = "" if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f" ± {ci:.3g}"
                    cells.append(f"{mean:.4g}{half} (n={int(n)})")
            out[m] = cells
        return out
    return df


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no dependency on ``tabulate``)."""
    if not len(df.columns):
        return "(no rows)\n"

    def row(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row([str(c) for c in df.columns]), row(["---"] * len(df.columns))]
    lines += [row([fmt(v) for v in r]) for r in df.itertuples(index=False, name=None)]
    return "\n".join(lines) + "\n" + ("" if len(df) else "\n(no rows)\n")


def html_table(df: pd.DataFrame) -> str:
    if not len(df):
        cols = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        return f"<table><tr>{cols}</tr></table><p>(no rows)</p>"
    shown = df.map(fmt) if hasattr(df, "map") else df.applymap(fmt)
    return '<div class="wide">' + shown.to_html(index=False, escape=True, border=0) + "</div>"


def _inline_html(text: str) -> str:
    """Escape, then `code` → <code>, **bold** → <b>, *italic* → <i>."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\*([^*]+)\*", r"<i>\1</i>", out)


# ---------------------------------------------------------------- content


def _counts(runs: pd.DataFrame) -> dict[str, int]:
    if not len(runs) or "status" not in runs.columns:
        return {}
    return {s: int(n) for s, n in runs["status"].astype(str).value_counts().sort_index().items()}


def _values(runs: pd.DataFrame, col: str) -> str:
    if col not in runs.columns or not len(runs):
        return "n/a"
    vals = runs[col].dropna().unique().tolist()
    return ", ".join(fmt(v) for v in sorted(vals, key=lambda v: (str(type(v)), v)))


def _blocks(sweep: Sweep, out_dir: Path, figures: dict[str, Path], tables: dict[str, pd.DataFrame]) -> list:
    """The report as a list of blocks, rendered to markdown and to HTML by the same code."""
    runs = sweep.runs
    counts = _counts(runs)
    seeds = runs["seed"].nunique() if "seed" in runs.columns and len(runs) else 0
    b: list[tuple] = [("h1", f"Analysis of sweep `{sweep.name}`")]
    b.append(
        (
            "p",
            "Produced by `python -m analysis.figures` from the stored result files only (no model is "
            "loaded). Losses are nats per image on the test set; the paper's ranking criterion is the "
            "reconstruction term (distortion).",
        )
    )
    summary = [
        f"runs: {len(runs)} ("
        + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
        + "); evaluated: "
        + str(int(runs["eval/status"].eq("ok").sum()) if "eval/status" in runs.columns else 0),
        f"seeds: {_values(runs, 'seed')}; latent sizes: {_values(runs, 'latent_dim')}",
        f"encoders: {_values(runs, 'family/encoder')}; decoders: {_values(runs, 'family/decoder')}",
        f"likelihood: {_values(runs, 'data.likelihood')}; loss.reduction: {_values(runs, 'loss.reduction')}; "
        f"epochs: {_values(runs, 'epochs')}; IWAE K: {_values(runs, 'test/iwae_k')}",
        f"datasets: {_values(runs, 'data.name')}; FID prior samples: {_values(runs, 'test/fid_samples')}",
        f"skipped input files: {len(sweep.skipped)}",
    ]
    b.append(("h2", "Summary"))
    b.append(("ul", summary))
    if seeds == 0:
        b.append(("p", "**No runs were found below this directory.**"))
    elif seeds == 1:
        b.append(
            (
                "p",
                "**This sweep has a single seed: intervals across seeds are unavailable.** Seed aggregates "
                "carry no interval and claims that need one are *inconclusive*.",
            )
        )
    b.append(("h2", "Claims check"))
    b.append(
        (
            "p",
            'Each claim (docs/protocol.md "Claims check") has one named statistic computed per seed and '
            "averaged over the seeds, and is decided by a test that uses every run and respects the design "
            "(analysis/permutation.py): a stratified (restricted) permutation test, the claim's variable "
            "shuffled within seeds and within the strata its null holds fixed (Good, *Permutation, "
            "Parametric and Bootstrap Tests of Hypotheses*, 3rd ed., 2005; Pesarin & Salmaso, *Permutation "
            f"Tests for Complex Data*, 2010), with {claims.permutation.N_PERM} permutations from a fixed "
            "seed and p = (1 + #≥)/(1 + B) (Phipson & Smyth 2010), and a percentile bootstrap interval that "
            "resamples configurations (all seeds of one together) within latent sizes (Efron & Tibshirani, "
            f"*An Introduction to the Bootstrap*, 1993), {claims.permutation.N_BOOT} resamples. The former "
            f"per-seed rule, a {CI} Student-t interval over the seed means, is kept as a robustness column "
            "(`seed_verdict`); with one seed the all-runs verdict speaks for that seed's configurations, not "
            "across seeds. The ablation: Fisher's exact test with a Newcombe interval. Decision constants: "
            + ", ".join(f"{k} = {v:g}" for k, v in claims.CONSTANTS.items())
            + ".",
        )
    )
    verdicts = tables.get("claims")
    if verdicts is not None and "verdict" in verdicts.columns:
        items = []
        for _, v in verdicts.iterrows():
            ci = f" [{fmt(v['ci_low'])}, {fmt(v['ci_high'])}]" if fmt(v["ci_low"]) else ""
            p = f", p = {fmt(v['p_value'])}" if fmt(v["p_value"]) else ""
            arm = f" ({v['arm']})" if v.get("arm", "all") != "all" else ""
            seed = v.get("seed_verdict")
            seed_ci = (
                f" [{fmt(v['seed_ci_low'])}, {fmt(v['seed_ci_high'])}]" if fmt(v.get("seed_ci_low")) else ""
            )
            robust = f" Per-seed t interval{seed_ci}: {seed}." if fmt(seed) else ""
            items.append(
                f"**{v['claim']}{arm}: {v['verdict']}.** {v['statement']} Test: {v['test']} "
                f"Statistic: {fmt(v['statistic']) or 'n/a'}{ci}{p}, n = {v['n']} runs.{robust} Why: {v['why']}"
            )
        b.append(("ul", items))
    else:
        b.append(("p", "The claims check could not be computed (see the `claims` table)."))
    budget_tab = tables.get("claims_budget")
    if budget_tab is not None and "verdict" in budget_tab.columns:
        b.append(("h3", "Verdicts against the training budget"))
        if len(budget_tab):
            b.append(("p", note_for("claims_budget", FIGURE_NOTES)))
            b.append(("ul", list(budget.settling(budget_tab).values())))
        else:
            b.append(("p", "No per-epoch records (epochs.parquet) for any ok run: no budget verdicts."))
    cap = tables.get("capacity")
    if cap is not None and "quantity" in cap.columns:
        b.append(("h3", "Architecture or capacity?"))
        b.append(("p", note_for("capacity", TABLE_NOTES)))
        b.append(("ul", capacity.summary(cap)))
    by_dataset = tables.get("claims_by_dataset")
    if by_dataset is not None and len(by_dataset):
        b.append(("h3", "Verdicts by dataset"))
        b.append(("p", note_for("claims_by_dataset", TABLE_NOTES)))
        b.append(("table", by_dataset))
    b.append(("h2", "Figures"))
    b.append(("p", "Each figure is also a PDF beside its PNG."))
    for name, path in figures.items():
        b.append(("h3", name))
        b.append(("p", note_for(name, FIGURE_NOTES)))
        b.append(("figure", name, Path(path)))
    b.append(("h2", "Tables"))
    b.append(("p", "Each table is also written as `<name>.csv` (full precision) and `<name>.md`."))
    for name, df in tables.items():
        b.append(("h3", name))
        b.append(("p", note_for(name, TABLE_NOTES)))
        if name == "claims":  # the long text is in the claims check above
            df = df.drop(columns=[c for c in ("statement", "test", "why") if c in df.columns])
        b.append(("table", display(name, df)))
    b.append(("h2", "Runs without test metrics"))
    bad = runs[~runs["status"].astype(str).eq("ok")] if len(runs) and "status" in runs.columns else runs
    if "eval/status" in runs.columns and len(runs):
        bad = runs[~(runs["status"].astype(str).eq("ok") & runs["eval/status"].eq("ok"))]
    if len(bad):
        b.append(
            (
                "ul",
                [
                    f"`{r['run_name']}`: {r['status']}"
                    + (f" ({fmt(r.get('error'))[:200]})" if fmt(r.get("error")) else "")
                    for _, r in bad.sort_values("run_name").iterrows()
                ],
            )
        )
    else:
        b.append(("p", "None: every run finished and was evaluated."))
    b.append(("h2", "Skipped files"))
    if sweep.skipped:
        b.append(("ul", [f"`{_rel(path, sweep.root)}`: {reason}" for path, reason in sorted(sweep.skipped)]))
    else:
        b.append(("p", "None."))
    b.append(("h2", "Thresholds and constants"))
    from analysis.plotting import RATE_FLOOR

    consts = {**TH, "rank.TOP_FRACTION": rank.TOP_FRACTION, "rank.CUTOFFS": rank.CUTOFFS}
    consts.update({"rank.CI_LEVEL": rank.CI_LEVEL, "plotting.RATE_FLOOR": RATE_FLOOR})
    b.append(("ul", [f"{k} = {v}" for k, v in consts.items()]))
    return b


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _markdown(blocks: list, out_dir: Path) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1] + "\n")
        elif kind == "p":
            out.append(block[1] + "\n")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]) + "\n")
        elif kind == "figure":
            rel = _rel(str(block[2]), out_dir)
            out.append(f"![{block[1]}]({rel})\n\n[PDF]({Path(rel).with_suffix('.pdf')})\n")
        elif kind == "table":
            out.append(markdown_table(block[1]))
    return "\n".join(out)


def _html(blocks: list, title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline_html(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f'<p class="note">{_inline_html(block[1])}</p>')
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "figure":
            data = base64.b64encode(Path(block[2]).read_bytes()).decode()
            out.append(f'<img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            out.append(html_table(block[1]))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(
    sweep: Sweep, out_dir: str | Path, figures: dict[str, Path], tables: dict[str, pd.DataFrame]
) -> list[Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; ``figures`` maps a figure name to its
    PNG, ``tables`` a table name to its (full) DataFrame. Returns the two paths."""
    out_dir = Path(out_dir)
    blocks = _blocks(sweep, out_dir, figures, tables)
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_bytes(md, _markdown(blocks, out_dir).encode())
    atomic_write_bytes(page, _html(blocks, f"Analysis of sweep {sweep.name}").encode())
    return [md, page]
