"""The published answer across conditions: README's "What the study finds" table (claim × condition)
and its paragraph on which verdicts hold in every condition, written from each condition's committed
``claims.csv`` (the deciding row of each claim: docs/protocol.md "Claims check"), never by hand.

A condition is a committed sweep under ``results/examples/``, or chosen seeds of one (``CONDITIONS``:
the reproduction's seed 0 alone is the baseline of the seed-0 conditions). One whose report is not
committed yet, or whose launched grid is not complete (a report of a part of the grid, a failed run a
hole in it: :func:`analysis.coverage.done`) or not known whole (an unreadable ``grid.json``, or one a
narrowed relaunch rewrote), fills its column with ``pending``, with a warning (how far each sweep got:
results/examples/README.md); a report not made from its grid's complete runs as they are now (its
``inputs.csv``: older than its runs, re-evaluated since, another sweep's) is refused, and so is a
condition whose runs were not trained and evaluated as its experiment says (its protocol: dataset,
epochs, loss, evaluation profile; an MNIST sweep in the Fashion-MNIST folder). Every number in a cell
is the claims table's, to 3 significant digits.

    python -m analysis.conditions results/examples                  # print the table and the paragraph
    python -m analysis.conditions results/examples --readme README.md   # rewrite README's block
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import coverage, transfer
from analysis.arch_claims import DECIDING_METRIC
from analysis.claim_stats import fmt3, p_fmt
from sweep.results import atomic_write_bytes


@dataclass(frozen=True)
class Condition:
    """One column of README's table: ``label``, the committed ``sweep`` under results/examples/ whose
    runs it is decided on, and the ``seeds`` of them it holds (None: every seed). A condition of chosen
    seeds has its report in ``<sweep>/seed<seeds>/`` (:attr:`report`), made by :attr:`command`."""

    label: str
    sweep: str
    seeds: tuple[int, ...] | None = None
    runs: int = 100  # its whole grid's runs (G0: 4 latent sizes × 5 encoders × 5 decoders, per seed)

    @property
    def experiment(self) -> str:
        """The experiment (``conf/experiment/``) that trains its sweep, whose protocol its runs must have:
        the sweep's name (each condition's sweep is its experiment's ``sweep_name``)."""
        return self.sweep

    @property
    def report(self) -> str:
        """The directory of its ``claims.csv``, relative to results/examples/."""
        return self.sweep if self.seeds is None else f"{self.sweep}/seed{'_'.join(map(str, self.seeds))}"

    @property
    def command(self) -> str:
        """The command that writes its report (run from the repository root)."""
        where = "results/examples/"
        seeds = "" if self.seeds is None else " --seeds " + ",".join(map(str, self.seeds))
        return f"python -m analysis.figures {where}{self.sweep}{seeds} --out {where}{self.report}"


# README's columns, in order. The reproduction's seed 0 alone is the baseline of the seed-0 conditions:
# each differs from it in one factor (the 30-epoch runs are its configurations: tests/test_slim.py), where
# against the three-seed column a verdict could also change with the seeds
CONDITIONS = (
    Condition("MNIST, 10 epochs, 3 seeds", "reproduce", runs=300),
    Condition("MNIST, 10 epochs, seed 0", "reproduce", (0,)),
    Condition("MNIST, 30 epochs, seed 0", "reproduce_e30"),
    Condition("capacity-matched, seed 0", "capacity_matched"),
    Condition("Fashion-MNIST, 10 epochs, seed 0", "reproduce_fashion_mnist"),
)
BASELINE = CONDITIONS[1].label  # the seed-0 conditions' baseline: rankings are compared with it (analysis.transfer)
# the paper's words for each claim (the table's second column)
PAPER = {
    "C1": "nearly half the runs collapse",
    "C2": "collapse correlates only weakly with poor reconstruction",
    "C3": "in the top 25 %, lower distortion goes with higher KL",
    "C4": "one-layer dense encoders encode best",
    "C5a": "conv decoders decode better than dense ones",
    "C5b": "conv decoders benefit from several blocks",
    "C6": "larger latents degrade latent quality, separable at moderate sizes",
}
STATISTIC = {  # what each claim's deciding statistic is, in a cell
    "C1": "paper-collapsed fraction",
    "C2": "r(collapsed fraction, distortion)",
    "C3": "ρ(distortion, KL) in the top 25 %",
    "C6": "mean within-architecture ρ(latent, kNN accuracy)",
}
PENDING = "pending"  # a condition whose report is not committed: results/examples/README.md says how far
BEGIN, END = "<!-- conditions: begin (python -m analysis.conditions) -->", "<!-- conditions: end -->"
_SEPARABLE = re.compile(
    r"at latent <= (\d+): ([-\d.e]+), bootstrap 95 % CI \[([-\d.e]+), ([-\d.e]+)\] against ([\d.]+) "
    r"\(separability: ([a-z ]+)\)"
)


class ConditionsError(ValueError):
    """A condition's claims table cannot be read into one column (several protocol groups, no rows)."""


def num(x) -> str:
    """A cell's number: 3 significant digits, a true minus sign."""
    return fmt3(x).replace("-", "−")


def _p(row) -> str:
    if not np.isfinite(row["p_holm"]):
        return ""
    bound = bool(row["p_bound"])
    return f", p {p_fmt(row['p_value'], bound)}, Holm p {p_fmt(row['p_holm'], bound)}".replace("-", "−")


def _gap(part: str) -> str:
    """``"dense1 vs conv2"`` → ``"conv2 − dense1"``: the contrast rows' statistic is other − claimed."""
    claimed, other = part.split(" vs ", 1)
    name = lambda s: s if "+" not in s else "(" + s.replace("+", ", ") + ")"  # noqa: E731
    return f"{name(other)} − {name(claimed)}"


def cell(row: pd.Series, rows: pd.DataFrame) -> str:
    """One claim's cell from its deciding row ``row`` (``rows``: the claim's other rows, where C4's joint
    row finds the contrast that gave its statistic): verdict, statistic [interval], p and Holm p
    where the test has them, n configurations."""
    claim, verdict = row["claim"], row["verdict"]
    if not np.isfinite(row["statistic"]):
        what = STATISTIC.get(claim, "the contrast")
        return f"{verdict}: {what} undefined ({str(row['why']).split(':')[0].strip()})"
    stat, ci = num(row["statistic"]), f"[{num(row['ci_low'])}, {num(row['ci_high'])}]"
    if pd.isna(row["ci_low"]) or pd.isna(row["ci_high"]):
        ci = "[no interval: too few configurations to reject any value]"
    if claim == "C4":
        worst = rows[
            rows["metric"].eq(DECIDING_METRIC)
            & rows["part"].str.contains(" vs ")
            & ~rows["decides"].astype(bool)
        ]
        # the smallest gap of all, or (not reproduced) of the not-reproduced contrasts: arch_claims
        against = worst["verdict"].eq("not reproduced") if "verdict" in worst.columns else worst["statistic"].isna()
        smallest = verdict != "not reproduced" or not len(worst) or row["statistic"] <= worst["statistic"].min()
        what = "smallest gap" if smallest or not against.any() else "smallest not-reproduced gap"
        worst = worst[np.isclose(worst["statistic"], row["statistic"], rtol=0, atol=0)]
        what = f"{what} ({_gap(worst['part'].iloc[0])})" if len(worst) else what
        text = f"{what} {stat} {ci} nats"
    elif claim in STATISTIC:
        text = f"{STATISTIC[claim]} {stat} {ci}"
    else:
        text = f"{_gap(row['part'])} {stat} {ci} nats"
    text = f"{verdict}: {text}{_p(row)}, n = {int(row['n_configs'])}"
    if claim == "C6" and (m := _SEPARABLE.search(str(row["why"]))):
        latent, mean, low, high, _, sep = m.groups()
        text += f"; separability {sep} (kNN {num(float(mean))} [{num(float(low))}, {num(float(high))}] at latent ≤ {latent})"
    return text


def _pending(path: Path, why: str) -> None:
    print(f"warning: {path}: {why}: its condition stays pending", file=sys.stderr)


def read_condition(root: Path, condition: Condition) -> tuple[pd.DataFrame | None, int]:
    """(the claims table of ``condition``'s committed report under ``root`` or None, its complete
    runs). None, with a warning, where its grid is not complete (a report of a part of it), was not read
    from its launch's record, or lists another number of runs than the condition's whole grid (a
    narrowed relaunch rewrote it); a table not made from exactly the grid's complete runs as they are
    now (:func:`analysis.coverage.inputs_differ`: older than its runs, or another sweep's) is refused."""
    sweep_dir = root / condition.sweep
    got = coverage.done(sweep_dir, condition.seeds)
    path = root / condition.report / "claims.csv"
    if not path.is_file():
        return None, got.complete
    if not got.launched:
        _pending(path, f"its grid is not known from a launch ({got.source})")
        return None, got.complete
    if got.runs != condition.runs:
        _pending(path, f"its grid ({got.source}) lists {got.runs} runs, not the condition's {condition.runs}")
        return None, got.complete
    if got.complete < got.runs:  # of a part of the grid (failed runs are holes too)
        _pending(
            path,
            f"of a grid not complete ({got.complete} of its {got.runs} runs complete; the rest failed or "
            "are not trained yet)",
        )
        return None, got.complete
    expected = coverage.expected_configs(condition.experiment, got.names)  # composed once, for both
    if why := coverage.protocol_differs(sweep_dir, got.names, expected) or coverage.config_differs(
        sweep_dir, expected
    ):
        raise ConditionsError(
            f"{sweep_dir} was not trained as experiment={condition.experiment} says ({why}): its column "
            f"would carry a label its runs do not have; valid: the sweep of python -m sweep.train "
            f"experiment={condition.experiment}"
        )
    table = pd.read_csv(path)
    groups = [c for c in table.columns[: list(table.columns).index("claim")]]
    if groups and len(table[groups].drop_duplicates()) > 1:
        raise ConditionsError(f"{path} holds several protocol groups ({', '.join(groups)}): one column each")
    if "arm" in table.columns and table["arm"].nunique() > 1:
        arms = ", ".join(sorted(table["arm"].astype(str).unique()))
        raise ConditionsError(f"{path} holds several arms ({arms}): a condition is one arm")
    if not table["decides"].astype(bool).any():
        raise ConditionsError(f"{path} has no deciding row")
    if why := coverage.inputs_differ(sweep_dir, got.names, path.parent / coverage.INPUTS):
        raise ConditionsError(
            f"{path} was not made from its grid's {got.complete} complete runs as they are now ({why}); "
            f"regenerate it: {condition.command}"
        )
    return table, got.complete


def table(root: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(column headers, {claim: {header: cell}}) for the conditions under ``root``."""
    headers, cells = [], {c: {} for c in PAPER}
    if not any((root / c.sweep).is_dir() for c in CONDITIONS):
        sweeps = ", ".join(dict.fromkeys(c.sweep for c in CONDITIONS))
        raise ConditionsError(
            f"root={root} holds none of the conditions' sweeps; valid: the folder that holds {sweeps}, "
            "e.g. results/examples"
        )
    for condition in CONDITIONS:
        label = condition.label
        claims, trained = read_condition(root, condition)
        if claims is None:
            headers.append(label)
            for c in cells:
                cells[c][label] = PENDING
            continue
        decide = claims[claims["decides"].astype(bool)]
        header = f"{label} ({int(decide['n_configs'].max())} configurations, {trained} runs)"
        headers.append(header)
        for c in cells:
            row = decide[decide["claim"].eq(c)]
            cells[c][header] = cell(row.iloc[0], claims[claims["claim"].eq(c)]) if len(row) else "not tested"
    return headers, cells


def _label(header: str) -> str:
    return header.split(" (")[0]


def agreement(headers: list[str], cells: dict[str, dict[str, str]]) -> str:
    """The paragraph: which verdicts are the same in every decided condition, which differ. A column of
    chosen seeds holds a part of another column's runs, not another condition: it is left out of the
    agreement and compared with its sweep's every-seed column alone (:func:`_seeds_sentence`)."""
    decided_all = [h for h in headers if not next(iter(cells.values()))[h].startswith("pending")]
    pending = [h for h in headers if h not in decided_all]
    chosen = {c.label for c in CONDITIONS if c.seeds is not None}
    decided = [h for h in decided_all if _label(h) not in chosen]
    seeds_text = _seeds_sentence(decided_all, cells)
    same, differ = {}, []
    for claim, row in cells.items():
        verdicts = [row[h].split(":")[0] for h in decided]
        if len(set(verdicts)) == 1:
            same.setdefault(verdicts[0], []).append(claim)
        else:
            each = ", ".join(f"{v} in {_label(h)}" for v, h in zip(verdicts, decided, strict=True))
            differ.append(f"{claim} ({each})")
    names = "; ".join(_label(h) for h in decided)
    grids = "its grid is" if len(pending) == 1 else "their grids are"
    pending_text = (
        f" Pending: {'; '.join(_label(h) for h in pending)} ({grids} not complete yet)." if pending else ""
    )
    if len(decided) == 1:
        return (
            f"Only one condition is decided so far ({names}); no verdict can yet be said to hold across "
            f"conditions.{seeds_text}{pending_text}"
        )
    out = f"Across the {len(decided)} condition{'s' if len(decided) != 1 else ''} decided so far ({names}): "
    out += "; ".join(f"{verdict} in every one: {', '.join(cs)}" for verdict, cs in same.items()) or "none"
    out += ". " + (
        f"Depends on the condition: {'; '.join(differ)}."
        if differ
        else "No verdict depends on the condition."
    )
    return out + seeds_text + pending_text


def _seeds_sentence(decided: list[str], cells: dict[str, dict[str, str]]) -> str:
    """For each decided condition of chosen seeds whose sweep is decided on every seed too: whether the
    chosen seeds give the same verdicts (a seed-0 condition is compared with its seed-0 baseline)."""
    by_label = {_label(h): h for h in decided}
    out = ""
    for cond in CONDITIONS:
        full = next((c for c in CONDITIONS if c.sweep == cond.sweep and c.seeds is None), None)
        if cond.seeds is None or full is None or not {cond.label, full.label} <= set(by_label):
            continue
        a, b = by_label[cond.label], by_label[full.label]
        diff = [
            f"{c} ({row[a].split(':')[0]} against {row[b].split(':')[0]})"
            for c, row in cells.items()
            if row[a].split(":")[0] != row[b].split(":")[0]
        ]
        seeds = ",".join(map(str, cond.seeds))
        out += f" {cond.label}, the seed-{seeds} runs of {full.label}, gives " + (
            f"other verdicts than {full.label} in {'; '.join(diff)}"
            if diff
            else f"every verdict of {full.label}"
        )
        out += f": the seed-{seeds} conditions are compared with it, each differing from it in one factor."
    return out


def rankings(root: Path, headers: list[str]) -> list[str]:
    """README's lines on how far the configurations' ranking carries over (:mod:`analysis.transfer`):
    each decided seed-0 condition, and each other seed of the baseline's own condition (the replicate
    ceiling), against ``BASELINE``; read from their reports' ``runs.csv``. Empty where the baseline
    is not decided."""
    decided = {_label(h) for h in headers if h != _label(h)}  # a decided column's header counts its runs
    if BASELINE not in decided:
        return []
    baseline = next(c for c in CONDITIONS if c.label == BASELINE)

    def runs(c: Condition) -> pd.DataFrame:
        path = root / c.report / "runs.csv"
        if not path.is_file():  # a report is its tables together: claims.csv without runs.csv is a part
            raise ConditionsError(f"{path} is missing beside its claims.csv; regenerate the report: {c.command}")
        return pd.read_csv(path)

    base = transfer.config_values(runs(baseline))
    compared: list[tuple[str, pd.DataFrame | None, bool]] = []
    for c in CONDITIONS:
        if c == baseline:
            continue
        if c.sweep == baseline.sweep and c.seeds is None:  # the baseline's condition: its other seeds
            if c.label in decided:
                every = runs(c)
                for s in sorted(set(every["seed"].astype(int)) - set(baseline.seeds)):
                    label = BASELINE.replace(f"seed {baseline.seeds[0]}", f"seed {s}")
                    compared.append((label, transfer.config_values(every, [s]), True))
            continue
        compared.append((c.label, transfer.config_values(runs(c)) if c.label in decided else None, False))
    return transfer.markdown(transfer.table(base, compared), BASELINE, PENDING)


def markdown(root: Path) -> str:
    """README's block: the claim × condition table, the agreement paragraph and the rankings' table
    (:func:`rankings`), between the markers."""
    headers, cells = table(root)
    ranks = rankings(root, headers)
    lines = [
        BEGIN,
        "| claim | the paper says | " + " | ".join(headers) + " |",
        "| --- | --- | " + " | ".join("---" for _ in headers) + " |",
        *(f"| {c} | {PAPER[c]} | " + " | ".join(cells[c][h] for h in headers) + " |" for c in PAPER),
        "",
        agreement(headers, cells),
        *(["", *ranks] if ranks else []),
        END,
    ]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with its one block between ``BEGIN`` and ``END`` replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ConditionsError(f"the file must hold the markers {BEGIN!r} and {END!r} once each")
    head, rest = text.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.conditions", description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="the directory holding the conditions' sweeps (results/examples)")
    p.add_argument("--readme", type=Path, help="rewrite this file's block between the markers")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(
            f"error: {args.root} is not a directory; valid: the folder of the committed sweeps, e.g. results/examples",
            file=sys.stderr,
        )
        return 2
    try:
        block = markdown(args.root)
        if args.readme is None:
            print(block)
            return 0
        text = replace_block(args.readme.read_text(), block)
    except (ConditionsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_bytes(args.readme, text.encode())
    print(f"wrote the conditions table of {args.root} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
