"""Slim a sweep: drop what the analysis does not read, keep a valid sweep directory.

    python -m sweep.slim results/examples/reproduce            # every finished run below the path
    python -m sweep.slim results/sweeps/paper --dry-run        # what it would drop, and the sizes

Per finished run (a ``COMPLETE`` marker with status ok, diverged or pruned) it drops the checkpoints
(``best.pt``, ``last.pt``), the TensorBoard event files and the full latent means
(``latents.parquet``), keeping their 2-D PCA projection as ``pca.parquet`` (what Figs. 6–7 draw; see
:mod:`sweep.projection`), rewrites the parquet tables without column statistics (the same values), re-encodes the two picture grids as 8-bit grayscale PNGs (lossless: their
three channels are equal), and records what it dropped in ``SLIMMED``. It keeps ``COMPLETE``,
``.hydra/`` (the config a relaunch compares with), ``run.parquet``, ``epochs.parquet``,
``eval.parquet``, ``dims.parquet`` and the logs (``.lock`` files mean nothing unless held, and
are not committed). So:

* relaunching the sweep's own command skips every slimmed run and trains only the missing ones;
* ``python -m sweep.status`` reads it, and ``python -m analysis.figures`` draws the same figures,
  tables and verdicts from it as from the sweep before slimming;
* what needs a checkpoint (``python -m sweep.evaluate``) refuses a slimmed run in one line and says
  to retrain it with ``python -m sweep.rerun``.

Runs that are unfinished, failed (``sweep.rerun --failed`` retries them) or held by a live process are
left untouched and named. Each file is replaced atomically and the projection is written before
anything is deleted, so an interrupted slim loses nothing: running it again finishes the job.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from sweep import projection, results
from sweep.lock import LOCK_NAME, run_lock
from sweep.paths import PathError, writable
from sweep.status import check_sweep_dir

SLIMMED = "SLIMMED"
SLIM_STATUSES = ("ok", "diverged", "pruned")  # final states; a failed run is retried in place
CHECKPOINTS = ("best.pt", *results.RESUME_FILES)
PICTURES = ("recon.png", "samples.png")
TABLES = ("run.parquet", "eval.parquet", "epochs.parquet", "dims.parquet")
TB_GLOB = "events.out.tfevents.*"


class SlimmedRunError(RuntimeError):
    """A command needs what :mod:`sweep.slim` dropped from a run (its checkpoint)."""


def is_slimmed(run_dir: Path) -> bool:
    return (Path(run_dir) / SLIMMED).is_file()


def require_checkpoint(run_dir: Path, verb: str) -> None:
    """Raise :class:`SlimmedRunError` (one line: why, and what to do instead) if ``run_dir`` has no
    ``best.pt`` because it was slimmed, or lost it. ``verb``: what the caller would do, e.g.
    ``re-evaluate``."""
    run_dir = Path(run_dir)
    if (run_dir / "best.pt").is_file():
        return
    name = run_dir.name
    why = (
        "was slimmed (python -m sweep.slim dropped its checkpoint)"
        if is_slimmed(run_dir)
        else "has no best.pt"
    )
    raise SlimmedRunError(
        f"{run_dir} {why}, so there is no checkpoint to {verb}; retrain it with "
        f"`python -m sweep.rerun {name} --from {run_dir}` (into results/runs/{name}/) and {verb} that run"
    )


def _gray_png(data: bytes) -> bytes:
    """The PNG ``data`` as 8-bit grayscale if its channels are all equal (lossless), else unchanged."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if img.mode == "L":
        return data
    rgb = img.convert("RGB")
    r, g, b = rgb.split()
    if r.tobytes() != g.tobytes() or r.tobytes() != b.tobytes():
        return data
    buf = io.BytesIO()
    r.save(buf, format="png", optimize=True)
    return buf.getvalue() if buf.tell() < len(data) else data


def droppable(run_dir: Path) -> list[Path]:
    """What slimming removes from one finished run directory."""
    run_dir = Path(run_dir)
    out = [run_dir / n for n in CHECKPOINTS if (run_dir / n).is_file()]
    out += sorted(run_dir.glob(TB_GLOB))
    if (run_dir / projection.LATENTS_FILE).is_file():
        out.append(run_dir / projection.LATENTS_FILE)
    return out


def slim_run(run_dir: Path) -> tuple[int, int]:
    """Slim one finished run in place (the caller holds its lock). Returns (bytes before, after)."""
    run_dir = Path(run_dir)
    before = _size(run_dir)
    latents = run_dir / projection.LATENTS_FILE
    if latents.is_file():  # the projection first: once it is written, nothing is lost by a stop
        got = projection.of_latents(*projection.read_latents(latents))
        pca, stamp = projection.compact_table(got), results.identity_of(latents)  # the latents' run's
        results.write_parquet(run_dir / projection.PCA_FILE, pca, compact=True, identity=stamp)
    for name in TABLES:  # the same values, metadata (identity stamp) included, without column statistics
        path = run_dir / name
        if path.is_file() and not is_slimmed(run_dir):
            results.write_parquet(path, pq.read_table(path), compact=True)
    for name in PICTURES:
        path = run_dir / name
        if path.is_file():
            data = path.read_bytes()
            gray = _gray_png(data)
            if gray is not data:
                results.atomic_write_bytes(path, gray)
    drop = droppable(run_dir)
    previous = json.loads((run_dir / SLIMMED).read_text())["dropped"] if is_slimmed(run_dir) else []
    note = {"dropped": sorted(set(previous) | {p.name for p in drop}), "kept": projection.PCA_FILE}
    results.atomic_write_bytes(run_dir / SLIMMED, (json.dumps(note, indent=1) + "\n").encode())
    for path in drop:
        path.unlink(missing_ok=True)
    return before, _size(run_dir)


def _size(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(run_dir).rglob("*") if p.is_file() and p.name != LOCK_NAME)


def run_dirs(root: Path) -> list[Path]:
    """Every run directory at or below ``root``: each holds one of what any started run writes first
    (``.hydra/config.yaml``, ``run.parquet``, ``COMPLETE``)."""
    root = Path(root)
    if any((root / m).is_file() for m in results.RUN_MARKERS):
        return [root]
    found = {p.parent for m in (results.COMPLETE, "run.parquet") for p in root.glob(f"**/{m}")}
    found |= {p.parent.parent for p in root.glob("**/.hydra/config.yaml")}
    return sorted(found)


def _unfinished(run_dir: Path) -> str:
    """Why a run without ``COMPLETE`` is left as it is: failed (with its error's first line), or
    not finished (interrupted, or training now)."""
    try:
        row = pq.read_table(run_dir / "run.parquet", columns=["status", "error"]).to_pylist()[0]
    except Exception:  # noqa: BLE001 - no row (still training or interrupted) or an unreadable one
        row = {}
    if row.get("status") == "failed":
        error = (row.get("error") or "no error recorded").strip().splitlines()[0]
        return f"failed ({error}; python -m sweep.rerun --failed retries it in place)"
    return "not finished (training, or interrupted: a relaunch resumes it)"


def slim(root: Path, *, dry_run: bool = False) -> dict[str, list]:
    """Slim every finished run below ``root``; every other run is named in "left" with why.
    Returns {"slimmed": [(dir, before, after)], "left": [(dir, why)]}."""
    out: dict[str, list] = {"slimmed": [], "left": []}
    for run_dir in run_dirs(root):
        if not results.is_complete(run_dir):
            out["left"].append((run_dir, _unfinished(run_dir)))
            continue
        try:
            status = results.read_complete(run_dir).get("status")
        except (OSError, ValueError) as exc:
            out["left"].append((run_dir, f"unreadable {results.COMPLETE} ({exc})"))
            continue
        if status not in SLIM_STATUSES:
            out["left"].append(
                (run_dir, f"status {status} (retried in place by python -m sweep.rerun --failed)")
            )
            continue
        if dry_run:  # an upper bound: what it drops, not what compacting saves
            dropped = sum(p.stat().st_size for p in droppable(run_dir))
            out["slimmed"].append((run_dir, _size(run_dir), _size(run_dir) - dropped))
            continue
        with run_lock(run_dir) as held:  # never beside training or sweep.evaluate on the same run
            if not held:
                out["left"].append((run_dir, "another process holds its lock"))
                continue
            results.tidy(run_dir)  # what a killed slim (or evaluate, or training) left
            if (run_dir / results.EVALUATING).exists():
                why = "its evaluation was interrupted (EVALUATING): run python -m sweep.evaluate on it first"
                out["left"].append((run_dir, why))
                continue
            out["slimmed"].append((run_dir, *slim_run(run_dir)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.slim", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="a sweep directory (or one run directory)")
    p.add_argument("--dry-run", action="store_true", help="say what would be dropped; change nothing")
    args = p.parse_args(argv)
    if not args.path.is_dir():
        print(f"error: {args.path} is not a directory; valid: a sweep or run directory", file=sys.stderr)
        return 2
    try:  # a directory with no sweep in it: "slimmed 0 runs" would read as done
        check_sweep_dir(args.path)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.dry_run:  # every run directory it would rewrite, before it touches any
        try:
            for run_dir in (d for d in run_dirs(args.path) if results.is_complete(d)):
                writable(run_dir, "the run directory")
        except PathError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    got = slim(args.path, dry_run=args.dry_run)
    for run_dir, why in got["left"]:
        print(f"{run_dir}: left as it is: {why}")
    n = len(got["slimmed"])
    before = sum(b for _, b, _ in got["slimmed"])
    after = sum(a for _, _, a in got["slimmed"])
    verb, bound = ("would slim", "at most ") if args.dry_run else ("slimmed", "")
    mean = f", {bound}{after / n / 1e3:.1f} KB per run" if n else ""
    why = (
        " (the files it drops; the tables and images it compacts come out smaller still)"
        if args.dry_run
        else ""
    )
    print(
        f"{verb} {n} runs: {before / 1e6:.1f} MB -> {bound}{after / 1e6:.2f} MB{mean}{why}; "
        f"{len(got['left'])} left as they are"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
