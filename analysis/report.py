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

from analysis import budget, capacity, claims, convergence, coverage, design, design_sensitivity, mi, rank
from analysis.collect import Sweep
from analysis.notes import FIGURE_NOTES, TABLE_NOTES, note_for
from analysis.tables import NO_RUNS
from sweep.results import atomic_write_bytes
from sweep.thresholds import THRESHOLDS

RUN_DISPLAY = [
    "run_name", "label", "status", "latent_dim", "family/encoder", "family/decoder", "seed", "epochs_done",
    "params/total", "test/distortion", "test/rate", "test/neg_elbo", "test/iwae_nll", "test/fid_prior", "test/active_units",
    mi.MI, mi.CEILING, mi.AT_CEILING, "collapsed", "partial", "paper_collapsed", "latent/linear_probe_acc",
    "latent/knn_acc", "test/psnr",
]  # fmt: skip
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px}
th{background:#f0f0f0}td{text-align:right}td:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#444}code{background:#f4f4f4;padding:0 3px}.wide{overflow-x:auto}"""


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
    aggregates; the mutual information's ceiling flag in words. CSV files keep the full numeric tables."""
    if mi.AT_CEILING in df.columns:
        df = df.assign(**{mi.AT_CEILING: mi.flag_words(df[mi.AT_CEILING])})
    if name == "runs":
        return df[[c for c in RUN_DISPLAY if c in df.columns]]
    if name == "seed_aggregates":  # each metric's three columns become one, where its mean was
        out = {}
        for c in df.columns:
            if c.endswith("/mean"):
                m = c.rsplit("/", 1)[0]
                out[m] = [_mean_cell(*v) for v in zip(df[c], df[f"{m}/ci95"], df[f"{m}/n"], strict=True)]
            elif not re.search(r"/(ci95|n)$", c) or f"{c.rsplit('/', 1)[0]}/mean" not in df.columns:
                out[c] = df[c].tolist()
        return pd.DataFrame(out, index=df.index, columns=list(out))
    return df


def _mean_cell(mean, ci, n) -> str:
    """``mean ± ci (n=…)``; no interval where there is none, empty where no run has a value."""
    if not n:
        return ""
    half = "" if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f" ± {ci:.3g}"
    return f"{mean:.4g}{half} (n={int(n)})"


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


def _counts(runs: pd.DataFrame, col: str = "status") -> dict[str, int]:
    """The number of runs with each value of ``col`` (nulls left out), in sorted order."""
    if not len(runs) or col not in runs.columns:
        return {}
    return {s: int(n) for s, n in runs[col].dropna().astype(str).value_counts().sort_index().items()}


def _values(runs: pd.DataFrame, col: str) -> str:
    if col not in runs.columns or not len(runs):
        return "n/a"
    vals = runs[col].dropna().unique().tolist()
    return ", ".join(fmt(v) for v in sorted(vals, key=lambda v: (str(type(v)), v)))


def _tally(runs: pd.DataFrame, col: str) -> str:
    """Each value of ``col`` with its number of runs, e.g. ``cpu (139), cuda (161)``."""
    return ", ".join(f"{v} ({n})" for v, n in _counts(runs, col).items()) or "n/a"


def _blocks(sweep: Sweep, out_dir: Path, figures: dict[str, Path], tables: dict[str, pd.DataFrame]) -> list:
    """The report as a list of blocks, rendered to markdown and to HTML by the same code."""
    return [
        ("h1", f"Analysis of sweep `{sweep.name}`{_title_seeds(sweep)}"),
        (
            "p",
            "Produced by `python -m analysis.figures` from the stored result files only (no model is "
            "loaded). Losses are nats per image on the test set; the paper's ranking criterion is the "
            "reconstruction term (distortion).",
        ),
        *_summary_blocks(sweep),
        *_claims_blocks(tables),
        *_design_blocks(tables),
        *_figure_blocks(figures),
        *_table_blocks(tables),
        *_unevaluated_blocks(sweep.runs),
        *_skipped_blocks(sweep),
        *_constants_blocks(),
    ]


def _title_seeds(sweep: Sweep) -> str:
    """The report title's note of chosen seeds (``--seeds``), e.g. `` (seed 0 alone)``."""
    if sweep.seeds is None:
        return ""
    return f" (seed{'s' if len(sweep.seeds) > 1 else ''} {', '.join(map(str, sweep.seeds))} alone)"


def _chosen(sweep: Sweep) -> str:
    """Where the analysis holds only some seeds (``--seeds``), that it chose them."""
    return "" if sweep.seeds is None else " (chosen: `--seeds " + ",".join(map(str, sweep.seeds)) + "`)"


def _summary_blocks(sweep: Sweep) -> list:
    """What the sweep holds, and a warning where it has no runs or a single seed."""
    runs = sweep.runs
    counts = _counts(runs)
    seeds = runs["seed"].nunique() if "seed" in runs.columns and len(runs) else 0
    summary = [
        f"runs: {len(runs)} ("
        + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
        + "); evaluated: "
        + str(int(runs["eval/status"].eq("ok").sum()) if "eval/status" in runs.columns else 0),
        f"seeds: {_values(runs, 'seed')}{_chosen(sweep)}; latent sizes: {_values(runs, 'latent_dim')}",
        f"encoders: {_values(runs, 'family/encoder')}; decoders: {_values(runs, 'family/decoder')}",
        f"likelihood: {_values(runs, 'data.likelihood')}; loss.reduction: {_values(runs, 'loss.reduction')}; "
        f"epochs: {_values(runs, 'epochs')}; IWAE K: {_values(runs, 'test/iwae_k')}",
        f"datasets: {_values(runs, 'data.name')}; FID prior samples: {_values(runs, 'test/fid_samples')}",
        f"trained on (runs per value, as each run recorded it): device {_tally(runs, 'device')}; "
        f"torch {_tally(runs, 'torch_version')}",
        f"skipped input files: {len(sweep.skipped)}",
    ]
    if (line := mi.summary(runs)) is not None:
        summary.insert(-1, line)
    grid_lines, short = coverage.summary_lines(coverage.of_sweep(sweep))
    summary[-1:-1] = grid_lines
    b: list[tuple] = [("h2", "Summary"), ("ul", summary)]
    if short is not None:
        b.append(("p", short))
    if seeds == 0:
        b.append(("p", "**No runs were found below this directory.**"))
    elif seeds == 1:
        b.append(
            (
                "p",
                f"**This {'analysis' if sweep.seeds is not None else 'sweep'} has a single seed.** The claims are still decided with the configuration as "
                "the unit (one run each); seed aggregates carry no interval and the per-seed robustness "
                "columns of the claims are empty.",
            )
        )
    return b


def _claims_method() -> str:
    """How the claims are decided, once for every claim, with the constants they are decided by."""
    return (
        'Method (docs/protocol.md "Claims check"; analysis/claims.py). **The experimental unit is the '
        "configuration**: the seeds of one configuration nearly copy one another, so each test runs on "
        "one row per configuration, the mean over its seeds (n counts configurations; the runs behind "
        "them beside). Directional tests are stratified permutation tests that shuffle configuration "
        "labels within the strata the claim holds fixed (Good 2005; Pesarin & Salmaso 2010), "
        f"{claims.permutation.N_PERM} permutations from a fixed seed, p = (1 + #≥)/(1 + B) in each tail "
        "(Phipson & Smyth 2010), two-sided: 2 × the smaller tail, a bound (≤) where no permutation reached "
        f"the observed value; a claim whose verdict would rest on the permutations drawn is tested again with "
        f"{claims.REFINE} times the draws, up to {claims.MAX_DRAWS:,} (`p_draws`). Matched contrasts "
        "(C4, C5a, C5b) average the gap between two groups of families over the cells that hold the other "
        "factors fixed, tested by flipping the sign of each cell's gap (the paired sign-flip test, "
        "whose null is the claim's: the groups' means do not differ), every one of the 2^k sign patterns of "
        f"k ≤ {claims.contrasts.EXACT_CELLS} cells (an exact p), random ones beyond; its interval is the test inverted: "
        "the shifts of the other group the two-sided test does not reject at 0.05, from the same draws "
        "(Ernst 2004), so it excludes 0 exactly where the raw two-sided p is at most 0.05. C6 is tested "
        "the same way on each encoder × decoder cell's Spearman ρ between the latent size and the measure "
        "(the latent size varies within a cell: the cells are its units). "
        f"Other intervals are percentile bootstraps over configurations within latent sizes, "
        f"{claims.permutation.N_BOOT} resamples (Efron & Tibshirani 1993). The directional tests (C3–C6) form one family: "
        "p-values are Holm-adjusted (Holm 1979) and every verdict of a test in the family is decided on "
        f"its adjusted p and the statistic's side: reproduced if it is below {claims.ALPHA} with the "
        "statistic on the claimed side, not reproduced if below with it on the other side, else "
        "inconclusive, so one error rate bounds a wrong verdict either way (C4 joins its contrasts, "
        "C6 adds a separability bar; C1 and C2 are decided by their intervals, below). The per-seed Student-t interval, the former rule, is "
        "kept as a robustness column (`seed_verdict`). The ablation: Fisher's exact test with a Newcombe "
        "interval. Decision constants: "
        + ", ".join(f"{k} = {v:g}" for k, v in claims.CONSTANTS.items())
        + "."
    )


def _p(v: pd.Series, col: str) -> str:
    p = v.get(col)
    if not fmt(p):
        return ""
    if bool(v.get("p_bound")):  # at the permutation floor: a bound, rounded up
        return f"≤ {claims.permutation.ceil_text(float(p))}"
    return fmt(p)


def _stat(v: pd.Series) -> str:
    ci = f" [{fmt(v['ci_low'])}, {fmt(v['ci_high'])}]" if fmt(v["ci_low"]) else ""
    return f"{fmt(v['statistic']) or 'n/a'}{ci}"


def claims_overview(verdicts: pd.DataFrame, deciding: bool) -> pd.DataFrame:
    """The report's claims tables: the deciding rows (one per claim: claim, the paper's statement,
    statistic [interval], raw and Holm p, verdict, n configurations (runs)), or the supporting rows."""
    rows = verdicts[verdicts["decides"].astype(bool) == deciding]
    out = pd.DataFrame({
        "claim": rows["claim"] + rows.get("arm", pd.Series("all", index=rows.index)).map(
            lambda a: "" if a == "all" else f" ({a})"
        ),
        **({"the paper says": rows["statement"]} if deciding else {}),
        "test": rows["part"] + " · " + rows["metric"],
        "statistic [95 % CI]": [_stat(v) for _, v in rows.iterrows()],
        "p": [_p(v, "p_value") for _, v in rows.iterrows()],
        "Holm p": [_p(v, "p_holm") for _, v in rows.iterrows()],
        "verdict": rows["verdict"],
        "n configs (runs)": [f"{v['n_configs']} ({v['n_runs']})" for _, v in rows.iterrows()],
    })  # fmt: skip
    return out.reset_index(drop=True)


def _test_words(v: pd.Series) -> str:
    """How a claim is tested, or, where it could not be here (C6 with one latent size), why not."""
    test = v.get("test")
    if isinstance(test, str) and test.strip():
        return test
    return f"not tested here: {v.get('why')}"


def monte_carlo_text(verdicts: pd.DataFrame) -> str:
    """Whether any verdict of the Holm family rests on Monte Carlo noise: the rows whose verdict differs
    between every raw p moved ``MC_SPAN`` standard errors down and up (``mc_stable``), with that range
    of their Holm p."""
    span = f"{claims.MC_SPAN:g} Monte Carlo standard errors (√(p(1 − p)/B); 0 for an exact p)"
    if "mc_stable" not in verdicts.columns:
        return "Monte Carlo: not checked (a claims table written before the check)."
    fam = verdicts[verdicts["in_family"].astype(bool) & verdicts["p_holm"].notna()]
    shaky = fam[fam["mc_stable"].eq(False)]
    draws = pd.to_numeric(fam.get("p_draws", pd.Series(index=fam.index, dtype=float)), errors="coerce")
    refined = fam[draws.gt(claims.permutation.N_PERM) & pd.to_numeric(fam["p_mc_se"], errors="coerce").gt(0)]
    again = (
        " (tested again with more permutations so that it does not: "
        + "; ".join(f"{v['claim']} {v['part']} · {v['metric']}, {int(v['p_draws']):,}" for _, v in refined.iterrows())
        + ")"
        if len(refined)
        else ""
    )
    if not len(shaky):
        return (
            f"Monte Carlo: every verdict of the family ({len(fam)} tests) holds with each raw p moved {span} "
            f"either way{again}: none rests on the permutations drawn."
        )
    rows = []
    for _, v in shaky.iterrows():
        arm = f", arm {v['arm']}" if str(v.get("arm", "all")) != "all" else ""
        rows.append(
            f"{v['claim']} {v['part']} · {v['metric']} ({v['verdict']}{arm}: Holm p {fmt(v['p_holm'])}, "
            f"{fmt(v['p_holm_mc_low'])}–{fmt(v['p_holm_mc_high'])} within the span)"
        )
    return (
        f"Monte Carlo: with each raw p moved {span} either way, {len(shaky)} of the family's {len(fam)} "
        f"verdicts could change, even at {claims.MAX_DRAWS:,} permutations: {'; '.join(rows)}; "
        "no other verdict rests on the permutations drawn."
    )


def _claims_blocks(tables: dict[str, pd.DataFrame]) -> list:
    """The claims check: one table of the verdicts, the supporting tests, the method once, then the
    verdicts by budget, capacity and dataset."""
    b: list[tuple] = [("h2", "Claims check")]
    verdicts = tables.get("claims")
    if verdicts is not None and "decides" in verdicts.columns:
        b.append(("table", claims_overview(verdicts, True)))
        b.append(("p", _claims_method()))
        tests = verdicts[verdicts["decides"].astype(bool)].drop_duplicates("claim")
        b.append(("ul", [f"**{v['claim']}**: {_test_words(v)}" for _, v in tests.iterrows()]))
        b.append(("h3", "Supporting tests"))
        b.append((
            "p",
            "The paper's top-25 % lifts, the likelihood (−ELBO, IWAE) side of every contrast and the other "
            "latent-quality measures; each is a member of the Holm family. Why each verdict, in words: "
            "`claims.csv` (`why`).",
        ))  # fmt: skip
        b.append(("table", claims_overview(verdicts, False)))
        b.append(("p", monte_carlo_text(verdicts)))
    else:
        b.append(("p", _claims_method()))
        b.append(("p", "The claims check could not be computed (see the `claims` table)."))
    budget_tab = tables.get("claims_budget")
    if budget_tab is not None and "verdict" in budget_tab.columns:
        b.append(("h3", "Verdicts against the training budget"))
        if len(budget_tab):
            b.append(("p", note_for("claims_budget", FIGURE_NOTES)))
            b.append(("ul", list(budget.settling(budget_tab).values())))
        else:
            b.append(("p", "No per-epoch records (epochs.parquet) for any ok run: no budget verdicts."))
    b += _convergence_blocks(tables)
    cap = tables.get("capacity")
    if cap is not None and "quantity" in cap.columns:
        b.append(("h3", "Architecture or capacity?"))
        b.append(("p", note_for("capacity", TABLE_NOTES)))
        b.append(("ul", capacity.summary(cap)))
    by_seed = tables.get("claims_by_seed")
    if by_seed is not None and "same_on" in by_seed.columns and len(by_seed):
        b.append(("h3", "Verdicts on each seed alone"))
        b.append(("p", note_for("claims_by_seed", TABLE_NOTES)))
        b.append(("ul", _seed_summary(by_seed)))
        b.append(("table", by_seed))
    by_dataset = tables.get("claims_by_dataset")
    if by_dataset is not None and len(by_dataset):
        b.append(("h3", "Verdicts by dataset"))
        b.append(("p", note_for("claims_by_dataset", TABLE_NOTES)))
        b.append(("table", by_dataset))
    return b


def _seed_summary(by_seed: pd.DataFrame) -> list[str]:
    """The claims whose verdict every seed alone gives, and a line for each that some seed does not."""
    seeds = [c for c in by_seed.columns if c.startswith("seed ") and not c.endswith(" statistic")]
    name = by_seed["claim"] + by_seed["arm"].map(lambda a: "" if a == "all" else f" ({a})")
    stable = by_seed[by_seed["same_on"].map(lambda x: x.split(" of ")[0] == x.split(" of ")[1])]
    lines = []
    if len(stable):
        lines.append(f"Every seed alone gives the verdict of all seeds together: {', '.join(name[stable.index])}.")
    for i, r in by_seed.drop(stable.index).iterrows():
        others = "; ".join(f"{r[s]} on {s} alone" for s in seeds if r[s] not in (r["all seeds"], NO_RUNS))
        lines.append(f"{name[i]}: {r['all seeds']} on all seeds together, but {others}.")
    return lines


def _convergence_blocks(tables: dict[str, pd.DataFrame]) -> list:
    """Are the models converged, and do rankings survive longer training (analysis/convergence.py):
    the method, then one sentence per criterion and the still-improving count."""
    stability, improving = tables.get("rank_stability"), tables.get("still_improving")
    if stability is None or improving is None or "rho" not in stability or "gain" not in improving:
        return []
    return [
        ("h3", "Convergence"),
        ("p", note_for("rank_stability", TABLE_NOTES) + " " + note_for("still_improving", TABLE_NOTES)),
        ("ul", convergence.summary(stability, improving)),
    ]


def _design_blocks(tables: dict[str, pd.DataFrame]) -> list:
    """Design choices (analysis/design.py), where the sweep has a design axis: the deciding rows, the
    method and its limits, the descriptive per-norm rows in words."""
    table = tables.get("design")
    if table is None or "decides" not in table.columns or not len(table):
        return []
    return [
        ("h2", "Design choices"),
        (
            "p",
            "Does dense1's place among the encoders, and the conv-over-dense decoder gap, change with "
            "normalisation or residual blocks? Every row and its note: `design.csv`.",
        ),
        ("table", design.overview(table)),
        ("p", design.METHOD),
        ("ul", design.summary(table) + (
            design_sensitivity.summary(tables["design_sensitivity"]) if "design_sensitivity" in tables else []
        )),
    ]


def _figure_blocks(figures: dict[str, Path]) -> list:
    b: list[tuple] = [("h2", "Figures"), ("p", "Each figure is also a PDF beside its PNG.")]
    for name, path in figures.items():
        # a figure drawn per protocol group is named "<figure> (<group>)": its note is the figure's
        b += [("h3", name), ("p", note_for(name.split(" (")[0], FIGURE_NOTES)), ("figure", name, Path(path))]
    return b


def _table_blocks(tables: dict[str, pd.DataFrame]) -> list:
    b: list[tuple] = [
        ("h2", "Tables"),
        ("p", "Each table is also written as `<name>.csv` (full precision) and `<name>.md`."),
    ]
    for name, df in tables.items():
        b += [("h3", name), ("p", note_for(name, TABLE_NOTES))]
        if name == "claims":  # the long text is in the claims check above and in claims.csv
            df = df.drop(columns=[c for c in ("statement", "test", "why", "null", "side") if c in df.columns])
        b.append(("table", display(name, df)))
    return b


def _unevaluated_blocks(runs: pd.DataFrame) -> list:
    """Every run that did not finish ``ok`` or was not evaluated, with its status and error."""
    b: list[tuple] = [("h2", "Runs without test metrics")]
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
    return b


def _skipped_blocks(sweep: Sweep) -> list:
    b: list[tuple] = [("h2", "Skipped files")]
    if sweep.skipped:
        b.append(("ul", [f"`{_rel(path, sweep.root)}`: {reason}" for path, reason in sorted(sweep.skipped)]))
    else:
        b.append(("p", "None."))
    return b


def _constants_blocks() -> list:
    from analysis.plotting import RATE_FLOOR

    consts = {**THRESHOLDS, "rank.TOP_FRACTION": rank.TOP_FRACTION, "rank.CUTOFFS": rank.CUTOFFS}
    consts.update({"rank.CI_LEVEL": rank.CI_LEVEL, "plotting.RATE_FLOOR": RATE_FLOOR})
    consts["mi.MI_CEILING_TOLERANCE"] = mi.MI_CEILING_TOLERANCE
    return [("h2", "Thresholds and constants"), ("ul", [f"{k} = {v}" for k, v in consts.items()])]


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
    atomic_write_bytes(page, _html(blocks, f"Analysis of sweep {sweep.name}{_title_seeds(sweep)}").encode())
    return [md, page]
