"""Gather the per-run parquet files of a results directory into one table (pyarrow).

    python -m analysis.collect results/sweeps/paper            # prints a summary
    python -m analysis.collect results/sweeps/paper --out runs.parquet

Every ``<run dir>/run.parquet`` (or ``epochs.parquet`` with ``--table epochs``) below the directory is
read; a missing, partial or unreadable file, one written by an incompatible schema version, or one
whose column types drifted from the other runs' (a string where the others have numbers), is skipped
with one warning line naming it, and listed in the returned ``skipped``; so is a stored
``.hydra/config.yaml`` that is not valid YAML (its run's rows are kept). Every run counts exactly once:
files are keyed on their resolved run directory (a link to a run already read is skipped), a file
must hold one row per run (``run``, ``eval``) or per its key (``ROW_KEYS``: no empty file, no repeated
epoch × split, dimension or image), and a run directory inside another run directory (a sweep launched
into a run) is skipped with both named; the same directory given twice is read once. A run's files
agree on whose they are: a file stamped with another run's identity (config plus seed,
:func:`sweep.keys.identity_digest`), or, for files written before stamps existed, one of another run
name, is skipped as another run's file (:func:`_not_this_run`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import mi
from sweep.keys import comparable, flatten, identity_digest, row_identity
from sweep.projection import LATENTS_FILE, PCA_FILE, Projection, read_latents
from sweep.projection import of_run as projection_of_run
from sweep.results import (
    COMPLETE,
    EVALUATING,
    IDENTITY_KEY,
    SCHEMA_VERSION,
    StoredConfigError,
    atomic_write_bytes,
    identity_of,
    is_complete,
    read_stored_config,
)

TABLES = ("run", "epochs", "eval", "dims", "latents")
EVALUATION_TABLES = ("eval", "dims", "latents")  # rewritten together by one evaluation
# The columns that identify a row within one run's file; () = the file holds exactly one row.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "run": (),
    "eval": (),
    "epochs": ("epoch", "split"),
    "dims": ("dim",),
    "latents": ("index",),
}


@dataclass
class Collected:
    table: pa.Table
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


def _schema_version(t: pa.Table) -> int | None:
    meta = t.schema.metadata or {}
    raw = meta.get(b"vae_sweep.schema_version")
    return int(raw) if raw is not None else None


def collect(root: str | Path, table: str = "run") -> Collected:
    """All ``{table}.parquet`` files below ``root`` as one table, rows sorted by run name."""
    if table not in TABLES:
        raise ValueError(f"table={table!r} is unknown; valid: {', '.join(TABLES)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results directory {root} does not exist")
    parts, skipped = [], []
    paths = []
    found = sorted(root.glob(f"**/{table}.parquet"))
    run_dirs = {path.parent.resolve(): path for path in reversed(found)}  # the first path of each
    for path in found:
        reason = _not_one_run(path, run_dirs, table)
        if reason is None and table in EVALUATION_TABLES and (path.parent / EVALUATING).exists():
            reason = (
                f"its evaluation was interrupted ({EVALUATING} is there): its evaluation files may "
                "come from two evaluations; run python -m sweep.evaluate on it"
            )
        if reason is None:
            try:
                t = pq.read_table(path)
            except Exception as exc:  # a torn or foreign file must not stop the analysis of the rest
                reason = f"unreadable: {exc}"
        if reason is None and (version := _schema_version(t)) != SCHEMA_VERSION:
            reason = f"schema version {version}, this code reads {SCHEMA_VERSION}"
        if reason is None:
            reason = _rows_problem(t, table) or _not_this_run(path, t, table) or _unfinished(path, t, table)
        if reason is not None:
            skipped.append((str(path), reason))
            print(f"warning: skipped {path}: {reason}", file=sys.stderr)
            continue
        run_dir = str(path.parent.relative_to(root))  # unique, unlike run_name across ablation variants
        t = t.replace_schema_metadata(None)
        parts.append(t.append_column("run_dir", pa.array([run_dir] * t.num_rows, pa.string())))
        paths.append(path)
    for i, reason in sorted(_drifted(parts).items()):
        skipped.append((str(paths[i]), reason))
        print(f"warning: skipped {paths[i]}: {reason}", file=sys.stderr)
    parts = [t for i, t in enumerate(parts) if str(paths[i]) not in {p for p, _ in skipped}]
    if not parts:
        return Collected(pa.table({}), skipped)
    out = pa.concat_tables(parts, promote_options="permissive")
    return Collected(out.sort_by([("run_dir", "ascending")]), skipped)


def _unfinished(path: Path, t: pa.Table, table: str) -> str | None:
    """Why a run row is not a finished run's (None if it is): a row that says the run ended (ok,
    diverged, pruned) beside no ``COMPLETE`` marker was cut off between the two (``run.parquet`` is
    written first): the run is not complete, and a relaunch finishes it. A failed run has no marker."""
    if table != "run" or "status" not in t.column_names or is_complete(path.parent):
        return None
    status = t.column("status")[0].as_py()
    if status == "failed":
        return None
    return f"its row says {status} but the run has no {COMPLETE} marker (not complete: a relaunch finishes it)"


def _not_one_run(path: Path, run_dirs: dict[Path, Path], table: str) -> str | None:
    """Why ``path`` is not a run of its own (None if it is): its resolved run directory was already
    read through another path (a link), or it lies inside another run's directory."""
    here = path.parent.resolve()
    if run_dirs[here] != path:
        return f"the same run directory as {run_dirs[here].parent} (a link): counted once"
    outer = next((p for p in here.parents if p in run_dirs), None)
    if outer is not None:
        return (
            f"inside the run directory {run_dirs[outer].parent}: a run never holds another run "
            "(a sweep directory was set inside a run's directory); analyse that sweep on its own"
        )
    return None


def _not_this_run(path: Path, t: pa.Table, table: str) -> str | None:
    """Why the file ``path`` (read as ``t``) belongs to another run than its directory's, or None: a
    ``run.parquet`` whose config (the identity keys: config plus seed) disagrees with the directory's
    ``.hydra/config.yaml`` on a key both hold, or another file whose identity stamp is not its run's
    (:func:`_other_run`: a file copied from another run, even one of the same run name). A file
    without a stamp (written before stamps existed, as the committed runs under ``results/examples``
    were) falls back to its ``run_name``, which must be the one of the directory's ``run.parquet``: a
    copy from a run of the same name but another config goes unseen there. What a directory lacks is
    not checked: the run is what its files agree on."""
    run_dir = path.parent
    if table == "run":
        try:
            stored = read_stored_config(run_dir)
        except (StoredConfigError, OSError):
            return None  # named by _bad_configs; the row still counts
        if stored is None:
            return None
        here = dict(row_identity(t.to_pylist()[0]))
        there = dict(row_identity(flatten(stored)))
        differ = [
            f"{k}={here[k]!r} (config {there[k]!r})"
            for k in sorted(set(here) & set(there))
            if here[k] != there[k]
        ]
        if differ:
            return f"its run's config is not the one in {run_dir / '.hydra' / 'config.yaml'}: {', '.join(differ)}"
        return None
    stamp = (t.schema.metadata or {}).get(IDENTITY_KEY)
    if stamp is not None:
        return _other_run(path, stamp.decode())
    try:
        with pq.ParquetFile(run_dir / "run.parquet") as f:  # a tenth of read_table's cost
            owner = f.read(columns=["run_name"]).column("run_name").to_pylist()
    except Exception:  # noqa: BLE001 - no run row to compare with (skipped itself, or still training)
        return None
    names = sorted({str(n) for n in t.column("run_name").to_pylist()}) if "run_name" in t.column_names else []
    if owner and names != [str(owner[0])]:
        return (
            f"holds run {', '.join(names) or '(no run_name)'}, but {run_dir / 'run.parquet'} is run {owner[0]}: "
            "another run's file, not used"
        )
    return None


def _other_run(path: Path, stamp: str | None = None) -> str | None:
    """Why the stamped file ``path`` (its identity stamp ``stamp``, read from it if not given) is another
    run's, or None: its stamp is neither the stamp of the directory's ``run.parquet`` nor the identity
    of that file's row (a run stored before stamps, evaluated since), or, before the run has a
    ``run.parquet``, not the identity of its ``.hydra/config.yaml``. None where the file has no stamp or
    there is nothing readable to compare with."""
    run_dir = path.parent
    owner = run_dir / "run.parquet"
    try:
        stamp = stamp if stamp is not None else identity_of(path)
        if stamp is None:
            return None
        if owner.is_file():
            theirs = identity_of(owner)
            if stamp == theirs:
                return None
            of_row = identity_digest(pq.read_table(owner).to_pylist()[0])
            if stamp == of_row:
                return None
            mine, source = theirs or of_row, owner
        else:
            stored = read_stored_config(run_dir)
            if stored is None:
                return None
            mine, source = identity_digest(stored), run_dir / ".hydra" / "config.yaml"
    except Exception:  # noqa: BLE001 - nothing readable to compare with: named where it is read
        return None
    if mine == stamp:
        return None
    return (
        f"it is stamped with run identity {stamp}, but {source} is run identity {mine} (another config or "
        "seed, whatever its run name): another run's file, not used"
    )


def _rows_problem(t: pa.Table, table: str) -> str | None:
    """Why a run's ``{table}.parquet`` does not hold one row per run (or per its key), or None."""
    key = ROW_KEYS[table]
    if not key:
        return None if t.num_rows == 1 else f"{t.num_rows} rows where a run has exactly one"
    if t.num_rows == 0:
        return "0 rows"
    missing = [k for k in key if k not in t.column_names]
    if missing:
        return f"no column {', '.join(missing)}"
    rows = t.select(list(key)).to_pylist()
    repeated = len(rows) - len({tuple(r.values()) for r in rows})
    return f"{repeated} repeated ({', '.join(key)}) rows" if repeated else None


def _unifies_schemas(schemas: list[pa.Schema]) -> bool:
    try:
        pa.unify_schemas(schemas, promote_options="permissive")
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False


def _unifies(*fields: pa.Field) -> bool:
    return _unifies_schemas([pa.schema([f]) for f in fields])


def _drifted(parts: list[pa.Table]) -> dict[int, str]:
    """{index: reason} of the tables with a column whose type cannot join the others' (a run that
    failed on a bad value may have stored, say, a string where every other run has an integer). Per
    column, the type most tables have wins (null columns join anything; int64 and double promote);
    the tables that disagree are the ones skipped, each with the column named."""
    bad: dict[int, str] = {}
    if _unifies_schemas([t.schema for t in parts]):
        return bad  # the usual case, checked at once
    names = dict.fromkeys(n for t in parts for n in t.column_names)
    for name in names:
        fields = [
            (i, t.schema.field(name)) for i, t in enumerate(parts) if name in t.column_names and i not in bad
        ]
        if _unifies(*(f for _, f in fields)):
            continue
        counts = Counter(str(f.type) for _, f in fields if not pa.types.is_null(f.type))
        # the most common type; on a tie not a string (the usual drift: a bad value stored as text)
        wins = max(counts, key=lambda t: (counts[t], t != "string"))
        ref = next(f for _, f in fields if str(f.type) == wins)
        for i, f in fields:
            if not _unifies(ref, f):
                bad[i] = f"column {name} is {f.type} where the other runs' is {ref.type} (schema drift)"
    return bad


@dataclass
class Sweep:
    """Everything analysis reads from a results directory. ``runs``: one row per run, ``run.parquet``
    joined with ``eval.parquet`` on ``run_dir`` (the run directory relative to the root: unique even
    where ablation variants share a run name; eval columns null where a run has no evaluation),
    plus ``label`` (the paper's spelling, e.g. ``L25_DNN1_CNN4``), ``family/encoder`` (``dense1``…),
    ``family/decoder``, and the mutual information's ceiling and flag (:func:`analysis.mi.with_ceiling`). ``dims``: one row per run × latent dimension. ``skipped``: (path, reason) of
    every file that could not be used."""

    root: Path
    runs: pd.DataFrame
    dims: pd.DataFrame
    skipped: list[tuple[str, str]]
    roots: list[Path] = field(default_factory=list)  # the directories given, when several
    same_as: list[str] = field(default_factory=list)  # run_dir of each run counted once as another's copy
    seeds: tuple[int, ...] | None = None  # the seeds chosen (only_seeds); None: every stored seed

    @property
    def name(self) -> str:
        return " + ".join(r.resolve().name for r in self.roots) if self.roots else self.root.name

    def latents(self, run_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(μ (n, L) float32, labels (n,)) of the stored test subset of one run (its ``run_dir``), or None
        (none stored, or the run was slimmed: :meth:`projection` still has what the figures draw)."""
        path = self.root / run_dir / LATENTS_FILE
        if not path.is_file():
            return None
        try:
            if reason := _other_run(path):
                print(f"warning: skipped {path}: {reason}", file=sys.stderr)
                return None
            return read_latents(path)
        except Exception as exc:
            print(f"warning: skipped {path}: unreadable ({exc})", file=sys.stderr)
            return None

    def projection(self, run_dir: str) -> Projection | None:
        """The 2-D PCA projection of one run's stored latents (from ``latents.parquet``, or from the
        ``pca.parquet`` of a slimmed run: the same numbers either way), or None; None with a warning
        where that file is stamped as another run's (:func:`_other_run`)."""
        run = self.root / run_dir
        path = run / LATENTS_FILE if (run / LATENTS_FILE).is_file() else run / PCA_FILE
        try:
            if path.is_file() and (reason := _other_run(path)):
                print(f"warning: skipped {path}: {reason}", file=sys.stderr)
                return None
            return projection_of_run(run)
        except Exception as exc:
            print(
                f"warning: skipped the latents of {self.root / run_dir}: unreadable ({exc})", file=sys.stderr
            )
            return None


def load_sweep(root: str | Path | list[str | Path]) -> Sweep:
    """Read a sweep (or any results directory, or several: a list) for analysis; never loads a model.
    With several roots, ``root`` is their common parent and each ``run_dir`` is relative to it. Runs
    stored before ``data.name`` existed trained on MNIST and get ``data.name = mnist``. A trained model
    stored twice (two copies of a sweep, a rerun beside its sweep: the same config and seed,
    :func:`sweep.keys.row_identity`) counts once (:func:`counted_once`)."""
    return counted_once(_load(root))


def only_runs(sweep: Sweep, keep) -> Sweep:
    """``sweep`` restricted to the runs where ``keep`` (booleans, one per row of ``sweep.runs``) holds,
    with their latent dimensions."""
    runs = sweep.runs[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    dirs = set(runs["run_dir"]) if len(runs) else set()
    dims = sweep.dims[sweep.dims["run_dir"].isin(dirs)].reset_index(drop=True) if len(sweep.dims) else sweep.dims
    return replace(sweep, runs=runs, dims=dims)


def only_seeds(sweep: Sweep, seeds: list[int] | tuple[int, ...]) -> Sweep:
    """``sweep`` restricted to the runs of ``seeds`` (``analysis.figures --seeds``: e.g. the
    reproduction's seed 0 alone, the baseline of a single-seed condition); ValueError naming the stored
    seeds where one of ``seeds`` has no run."""
    have = sorted({int(x) for x in sweep.runs["seed"]}) if len(sweep.runs) else []
    if missing := sorted(set(seeds) - set(have)):
        raise ValueError(
            f"--seeds {','.join(map(str, missing))}: no run of that seed below {sweep.root}; "
            f"valid: {', '.join(map(str, have)) or 'none (no run)'}"
        )
    keep = sweep.runs["seed"].astype(int).isin(seeds)
    runs = sweep.runs[keep].reset_index(drop=True)
    dims = sweep.dims[sweep.dims["run_dir"].isin(set(runs["run_dir"]))].reset_index(drop=True)
    same_as = [d for d in sweep.same_as if seed_of(Path(d).name) in seeds]  # copies of the chosen runs
    return replace(sweep, runs=runs, dims=dims, same_as=same_as, seeds=tuple(sorted(set(seeds))))


def seed_of(name: str) -> int | None:
    """The seed a run directory's name gives (None where it is no run name)."""
    from sweep.names import parse_run_name

    try:
        return parse_run_name(name).seed
    except ValueError:
        return None


def counted_once(sweep: Sweep) -> Sweep:
    """``sweep`` with one run per identity (config plus seed, wherever it is stored): of runs with one
    identity the first ok one by ``run_dir`` is kept (else the first), and every other is skipped with
    a warning naming the one kept, as are its dimensions."""
    runs = sweep.runs
    if not len(runs):
        return sweep
    keys = [row_identity(r) for r in runs.to_dict("records")]
    order = sorted(
        range(len(runs)), key=lambda i: (str(runs["status"].iloc[i]) != "ok", runs["run_dir"].iloc[i])
    )
    kept: dict[tuple, str] = {}
    dropped: list[tuple[str, str]] = []
    for i in order:
        run_dir = runs["run_dir"].iloc[i]
        if keys[i] in kept:
            dropped.append((run_dir, kept[keys[i]]))
        else:
            kept[keys[i]] = run_dir
    if not dropped:
        return sweep
    skipped = []
    for run_dir, same in sorted(dropped):
        reason = f"the same run (config and seed) as {sweep.root / same}: counted once"
        skipped.append((str(sweep.root / run_dir), reason))
        print(f"warning: skipped {sweep.root / run_dir}: {reason}", file=sys.stderr)
    gone = {d for d, _ in dropped}
    runs = runs[~runs["run_dir"].isin(gone)].reset_index(drop=True)
    dims = (
        sweep.dims[~sweep.dims["run_dir"].isin(gone)].reset_index(drop=True)
        if len(sweep.dims)
        else sweep.dims
    )
    return Sweep(sweep.root, runs, dims, sweep.skipped + skipped, sweep.roots, [d for d, _ in dropped])


def as_evaluated(df: pd.DataFrame) -> pd.DataFrame:
    """Each run's ``eval.*`` columns as its evaluation was made with: ``eval.parquet``'s ``eval/profile``
    (:func:`sweep.evaluate.eval_profile`) where it has one, over the stored config's values, which a
    re-evaluation with other ``eval.*`` values leaves as they were. So runs scored with two profiles
    fall in two protocol groups (:func:`analysis.rank.protocol_columns`), never pooled. Columns change
    only where a profile differs from the stored value (an evaluation stored before the profile was
    recorded has none: its config's values stand)."""
    if "eval/profile" not in df.columns:
        return df
    df = df.copy()
    for i, text in df["eval/profile"].items():
        if not isinstance(text, str):
            continue
        for key, value in json.loads(text).items():
            col = f"eval.{key}"
            if col not in df.columns:
                df[col] = pd.Series([None] * len(df), index=df.index, dtype=object)
            if comparable(df.at[i, col]) != comparable(value):
                df[col] = df[col].astype(object)
                df.at[i, col] = value
    return df


def _load(root: str | Path | list[str | Path]) -> Sweep:
    """:func:`load_sweep` before runs stored twice are counted once."""
    from sweep.names import DEFAULT_DATASET, paper_label

    roots = [Path(r) for r in root] if isinstance(root, list | tuple) else [Path(root)]
    roots, repeated = _distinct_roots(roots)
    if len(roots) > 1:  # each read alone (their columns' types may differ), joined as data frames
        base = Path(os.path.commonpath([r.resolve() for r in roots]))
        parts = [_load(r) for r in roots]

        def joined(frames: list[pd.DataFrame], part_roots: list[Path]) -> pd.DataFrame:
            frames = [
                f.assign(run_dir=[str(r.resolve().relative_to(base) / d) for d in f["run_dir"]])
                for f, r in zip(frames, part_roots, strict=True)
                if len(f)
            ]
            return pd.concat(frames, ignore_index=True).sort_values("run_dir") if frames else pd.DataFrame()

        runs_df = joined([p.runs for p in parts], roots)
        dims_df = joined([p.dims for p in parts], roots)
        skipped = repeated + [s for p in parts for s in p.skipped]
        return Sweep(base, runs_df.reset_index(drop=True), dims_df.reset_index(drop=True), skipped, roots)
    base = roots[0]
    runs, evals, dims = (collect(base, t) for t in ("run", "eval", "dims"))
    df = runs.to_pandas()
    if len(df):
        df["data.name"] = df["data.name"].fillna(DEFAULT_DATASET) if "data.name" in df else DEFAULT_DATASET
        ev = evals.to_pandas().drop(columns=["schema_version"], errors="ignore")
        dup = [c for c in ev.columns if c in df.columns and c != "run_dir"]
        df = df.merge(ev.drop(columns=dup), on="run_dir", how="left") if len(ev) else df
        df = as_evaluated(df)
        df["family/encoder"] = df["encoder.kind"] + df["encoder.depth"].astype(str)
        df["family/decoder"] = df["decoder.kind"] + df["decoder.depth"].astype(str)
        df = mi.with_ceiling(df)  # the estimate's ceiling, derived for runs stored before it was recorded
        df["label"] = [
            paper_label(
                r["latent_dim"], r["encoder.kind"], r["encoder.depth"], r["decoder.kind"], r["decoder.depth"]
            )
            for _, r in df.iterrows()
        ]
    skipped = repeated + runs.skipped + evals.skipped + dims.skipped + _bad_configs(base)
    dims_df = dims.to_pandas()
    if len(dims_df):  # the dimensions of runs whose row was skipped would count runs the table lacks
        dims_df = dims_df[dims_df["run_dir"].isin(set(df["run_dir"]) if len(df) else set())]
    return Sweep(base, df, dims_df.reset_index(drop=True), skipped)


def _distinct_roots(roots: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The roots without repeats: a root that resolves to one already given, or lies inside one, is
    dropped with a warning naming both (its runs would be counted twice). Returns (roots, skipped)."""
    keep: list[Path] = []
    skipped = []
    for r in roots:
        other = next(
            (k for k in keep if r.resolve() == k.resolve() or r.resolve().is_relative_to(k.resolve())), None
        )
        if other is None:
            inner = [k for k in keep if k.resolve().is_relative_to(r.resolve())]
            keep = [k for k in keep if k not in inner] + [r]
            pairs = [(k, r) for k in inner]
        else:
            pairs = [(r, other)]
        for dropped, by in pairs:
            reason = f"the same directory as {by}, or inside it: its runs are counted once"
            skipped.append((str(dropped), reason))
            print(f"warning: skipped {dropped}: {reason}", file=sys.stderr)
    return keep, skipped


def _bad_configs(root: str | Path) -> list[tuple[str, str]]:
    """Every stored ``.hydra/config.yaml`` below ``root`` that is not a readable config: one warning
    each, naming the file (its run's parquet rows are still used; the config is what a relaunch
    compares against)."""
    out = []
    for path in sorted(Path(root).glob("**/.hydra/config.yaml")):
        try:
            read_stored_config(path.parent.parent)
        except (StoredConfigError, OSError) as exc:
            out.append((str(path), str(exc)))
            print(f"warning: {exc}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.collect", description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--table", choices=TABLES, default="run")
    p.add_argument("--out", type=Path, help="write the gathered table to this parquet file")
    args = p.parse_args(argv)
    got = collect(args.root, args.table)
    print(f"{got.table.num_rows} rows from {args.root} ({len(got.skipped)} files skipped)")
    if args.out:
        sink = pa.BufferOutputStream()
        pq.write_table(got.table, sink)
        atomic_write_bytes(args.out, sink.getvalue().to_pybytes())
        print(f"wrote {args.out}")
    elif got.table.num_rows and args.table == "run":
        cols = [
            c
            for c in ("run_name", "status", "test/neg_elbo", "test/kl", "params/total")
            if c in got.table.column_names
        ]
        print(got.to_pandas()[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
