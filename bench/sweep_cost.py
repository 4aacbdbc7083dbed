"""What a committed sweep cost and what the rest of it will cost, measured from its own runs.

    python -m bench.sweep_cost results/examples/capacity_matched results/examples/reproduce_e30
    python -m bench.sweep_cost results/examples/reproduce_e30 --out /tmp/cost.json --workers 2

For each sweep: its complete runs' wall time (training, ``run.parquet`` ``wall_seconds``; evaluation,
``eval.parquet`` ``eval/seconds``), summed and as hours on ``--workers`` parallel workers, the median
per run by encoder and by decoder family; and the estimate of its missing runs (``grid.json`` less the
complete ones): each missing configuration's time in the baseline sweep (``--baseline``, the mean over
its seeds), its training time scaled to this sweep's epochs (evaluation does not scale), then by the
median ratio of this sweep's complete runs to the same expectation for the same encoder × decoder
family pair (else for the decoder family, which dominates the cost, else for every run): other widths
and the machines' load as they were measured (L25_dense1_dense1's training epochs took 2.5 to 9.3 s
across the reproduction's three seeds: an estimate from a few runs carries that spread).
With no complete run to measure a ratio on, the epochs-scaled baseline time is used as it is
(``missing_scaled_by`` counts the runs of each kind).
Wall times were measured on shared machines: the load average is in the JSON, not corrected for.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from bench.args import one_line_parser, output_path, positive_int
from sweep.names import RunNameError, parse_run_name
from sweep.results import atomic_write_bytes
from sweep.status import read_settings

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "sweep_cost.json"
DEFAULT_BASELINE = HERE.parent / "results" / "examples" / "reproduce"


def config_key(name: str) -> str | None:
    """A run name without its seed (``L25_dense1_conv4``): the configuration a baseline time belongs to."""
    try:
        return parse_run_name(name).name.rsplit("_s", 1)[0]
    except RunNameError:
        return None


def families(name: str) -> tuple[str, str]:
    """(encoder family, decoder family) of a run name, e.g. ("dense1", "conv4")."""
    try:
        r = parse_run_name(name)
    except RunNameError:
        return ("?", "?")
    return f"{r.enc_kind}{r.enc_depth}", f"{r.dec_kind}{r.dec_depth}"


def measured(sweep: Path) -> dict[str, dict]:
    """{run directory relative to ``sweep`` (its run name, or ``<variant>/<run name>`` where a grid
    nests its runs): {train, eval (seconds), epochs, encoder, decoder}} of ``sweep``'s complete runs."""
    out = {}
    for run in sorted(sweep.rglob("COMPLETE")):
        d = run.parent
        try:
            row = pq.read_table(d / "run.parquet").to_pylist()[0]
        except Exception:  # noqa: BLE001 - a run without a readable row has no time to report
            continue
        ev = 0.0
        if (d / "eval.parquet").is_file():
            ev = float(
                pq.read_table(d / "eval.parquet", columns=["eval/seconds"]).column(0)[0].as_py() or 0.0
            )
        out[d.relative_to(sweep).as_posix()] = {
            "train": float(row.get("wall_seconds") or 0.0), "eval": ev, "epochs": int(row.get("epochs") or 0),
            "encoder": families(d.name)[0], "decoder": families(d.name)[1],
        }  # fmt: skip
    return out


def _by(runs: dict[str, dict], key: str) -> dict[str, float]:
    fams: dict[str, list[float]] = {}
    for r in runs.values():
        fams.setdefault(r[key], []).append(r["train"])
    return {f: round(statistics.median(v) / 60, 2) for f, v in sorted(fams.items())}


def _sweep_epochs(sweep: Path, runs: dict[str, dict]) -> int | None:
    """The epochs a missing run of ``sweep`` will train: its ``grid.json`` settings', else its complete
    runs' (the largest count, where they differ), else None (the baseline's own, run by run)."""
    if (settings := read_settings(sweep)) and settings.get("epochs"):  # the grid check's own record
        return int(settings["epochs"])
    got = [r["epochs"] for r in runs.values() if r["epochs"]]
    return max(got) if got else None


def cost(sweep: Path, baseline: dict[str, dict], workers: int) -> dict:
    """The cost record of one sweep against the baseline's per-configuration times."""
    runs = measured(sweep)
    try:
        grid = json.loads((sweep / "grid.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        grid = list(runs)
    epochs = _sweep_epochs(sweep, runs)
    base: dict[str, list[dict]] = {}
    for name, r in baseline.items():
        base.setdefault(config_key(Path(name).name) or name, []).append(r)

    def expected(key: str, at: int | None) -> float:
        """The baseline's mean time of configuration ``key`` with its training at ``at`` epochs
        (training scales with the epochs, evaluation does not; a run without epochs, or ``at`` None,
        as it was)."""
        return statistics.fmean(
            r["train"] * (at / r["epochs"] if at and r["epochs"] else 1.0) + r["eval"] for r in base[key]
        )

    base_mean = {k: expected(k, epochs) for k in base}
    ratios: dict[
        tuple[str, str], list[float]
    ] = {}  # per (encoder, decoder) family pair, each run at its epochs
    for name, r in runs.items():
        if (k := config_key(Path(name).name)) in base and (want := expected(k, r["epochs"] or None)) > 0:
            ratios.setdefault(families(Path(name).name), []).append((r["train"] + r["eval"]) / want)
    every = [x for v in ratios.values() for x in v]
    by_decoder: dict[str, list[float]] = {}
    for (_, dec), v in ratios.items():
        by_decoder.setdefault(dec, []).extend(v)

    def scale(name: str) -> tuple[float, str]:
        pair = families(name)
        if pair in ratios:
            return statistics.median(ratios[pair]), "pair"
        if pair[1] in by_decoder:
            return statistics.median(by_decoder[pair[1]]), "decoder"
        if every:
            return statistics.median(every), "all"
        return 1.0, "none"

    missing = [n for n in grid if Path(n).as_posix() not in runs]
    unknown = [n for n in missing if config_key(Path(n).name) not in base_mean]
    scaled = [
        (base_mean[k], *scale(Path(n).name)) for n in missing if (k := config_key(Path(n).name)) in base_mean
    ]
    rest = sum(t * f for t, f, _ in scaled)
    scale_from = {how: sum(1 for *_, h in scaled if h == how) for how in ("pair", "decoder", "all", "none")}
    done = sum(r["train"] + r["eval"] for r in runs.values())
    return {
        "sweep": str(sweep), "grid_runs": len(grid), "complete_runs": len(runs), "epochs": epochs,
        "summed_hours": round(done / 3600, 2), "hours_on_workers": round(done / 3600 / workers, 2),
        "median_train_minutes_by_encoder": _by(runs, "encoder"),
        "median_train_minutes_by_decoder": _by(runs, "decoder"),
        "ratio_to_baseline": (
            {"min": round(min(every), 2), "median": round(statistics.median(every), 2), "max": round(max(every), 2)}
            if every else None
        ),
        "missing_scaled_by": scale_from,
        "missing_runs": len(missing), "missing_without_baseline": len(unknown),
        "estimated_rest_summed_hours": round(rest / 3600, 2),
        "estimated_rest_hours_on_workers": round(rest / 3600 / workers, 2),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = one_line_parser("python -m bench.sweep_cost", __doc__)
    p.add_argument("sweeps", nargs="+", type=Path, help="committed sweep directories")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="the sweep whose times scale")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel workers (default 2)")
    p.add_argument("--out", type=output_path, default=DEFAULT_OUT, help="JSON output")
    args = p.parse_args(argv)
    for d in [*args.sweeps, args.baseline]:
        if not (d / "grid.json").is_file() and not list(d.rglob("COMPLETE")):
            p.error(
                f"{d} is not a sweep (no grid.json and no complete run); valid: e.g. results/examples/reproduce"
            )
    baseline = measured(args.baseline)
    record = {
        "command": "python -m bench.sweep_cost " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.node()} · {os.cpu_count()} cores · {platform.machine()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average_1min": os.getloadavg()[0],
        "baseline": {"sweep": str(args.baseline), "complete_runs": len(baseline)},
        "workers": args.workers,
        "sweeps": [cost(d, baseline, args.workers) for d in args.sweeps],
    }
    atomic_write_bytes(args.out, (json.dumps(record, indent=1, ensure_ascii=False) + "\n").encode())
    for s in record["sweeps"]:
        print(
            f"{s['sweep']}: {s['complete_runs']} of {s['grid_runs']} runs, {s['summed_hours']} h summed "
            f"({s['hours_on_workers']} h on {args.workers} workers); the other {s['missing_runs']}: about "
            f"{s['estimated_rest_hours_on_workers']} h on {args.workers} workers"
            + (
                f", leaving out {s['missing_without_baseline']} with no run of their configuration in the "
                "baseline to scale"
                if s["missing_without_baseline"]
                else ""
            )
            + f" (each missing run: its baseline "
            f"time, training scaled to {s['epochs'] or 'its'} epochs, × this sweep's median ratio to that for "
            f"its family pair, else decoder, else all: "
            f"{s['missing_scaled_by']}; ratios measured {s['ratio_to_baseline']})"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
