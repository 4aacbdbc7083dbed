"""Rerun one configuration, named by its run name.

    python -m sweep.rerun L25_dense1_conv4_s0                 # retrain that configuration
    python -m sweep.rerun L25_DNN1_CNN4 epochs=100            # the paper's spelling; seed 0 if absent
    python -m sweep.rerun L25_dense1_conv4_s1 --from results/sweeps/paper/L25_dense1_conv4_s1
    python -m sweep.rerun --failed results/sweeps/paper       # retry every failed run of a sweep, in place

If a run of that name exists under the results directory (``results_dir=…``, default ``results``),
its exact stored config (``.hydra/config.yaml``) is reused with the overrides applied on top;
otherwise the config is composed from the name. Where several runs share the name (the committed
conditions each hold ``L25_dense1_conv4_s0``), the one whose stored config is the one the name
composes to (config plus seed: :func:`sweep.keys.row_identity`) is meant, and the output says so;
where none or several are, ``--from DIR`` picks one. The run trains into ``results/runs/<run_name>/``
(``results/runs/<dataset>/<run_name>/`` for a dataset other than MNIST, or ``--out DIR``, which must
lie below the results directory and, inside a sweep, be one of its grid's run directories with the
sweep's settings), with the same checks and skip/resume
rules as ``python -m sweep.train``. A NAME that disagrees with ``--from DIR``'s run is refused, and
so is a run directory that holds the run complete but evaluated with another profile than this
command's (it would be skipped, its numbers taken for these). An interrupted rerun is resumed by its
own command (the same overrides, in any order or spelling); for any other it is no source of config.
``data=fashion_mnist`` (or ``data.name=…``) picks the runs of that dataset when runs of both share the
name.

``--failed SWEEP_DIR`` retrains, each in its own directory with its stored config and overrides,
exactly the runs that ``python -m sweep.status`` lists as failed (one process, one engine launch);
runs another process is training are skipped as always. Diverged runs are final: the same seed
diverges again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from sweep import results
from sweep.config import CONF_DIR, apply_overrides, to_plain
from sweep.data import dataset_of
from sweep.hydra_setup import register
from sweep.keys import KEY_ROLES, flatten, row_identity
from sweep.names import dataset_subdir, parse_run_name, run_name_of
from sweep.paths import PathError, readable, writable
from sweep.rules import ConfigError, refusal, validate

register()  # an entry point: it composes configs


def find_runs(results_dir: Path, name: str) -> list[Path]:
    """Run directories called ``name`` anywhere under ``results_dir`` that hold a stored config."""
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.glob(f"**/{name}") if (p / ".hydra" / "config.yaml").is_file())


def _dataset_override(overrides: list[str]) -> str | None:
    """The dataset asked for on the command line (``data=…`` or ``data.name=…``), if any."""
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+") in ("data", "data.name"):
            return value
    return None


def build_config(name: str, overrides: list[str], results_dir: Path, source: Path | None = None):
    """(config, where it came from) for run ``name``."""
    rid = parse_run_name(name)
    dataset = _dataset_override(overrides)
    note = ""
    if source is None:
        found = find_runs(results_dir, rid.name)
        if dataset is not None:
            found = [p for p in found if dataset_of(results.read_stored_config(p) or {}) == dataset]
        unfinished = [p for p in found if _unfinished_rerun(p, results_dir)]
        mine = [p for p in unfinished if _same_command(_stored_overrides(p), overrides)]
        # an unfinished rerun of other overrides is no source: its config is another command's
        found = [p for p in found if p not in unfinished or p in mine]
        if len(found) > 1 and len(mine) == 1:  # the same command again, after it was interrupted
            others = ", ".join(str(p) for p in found if p != mine[0])
            note = f" (an unfinished rerun of this name: resuming it, not {others}; --from DIR picks one)"
            found = mine
        if len(found) > 1:  # the one whose config is the one its name composes to, if only one is
            default = dict(row_identity(flatten(_composed(rid, [f"data={dataset}"] if dataset else []))))
            named = [
                p
                for p in found
                if dict(row_identity(flatten(results.read_stored_config(p) or {}))) == default
            ]
            if len(named) != 1:
                raise ConfigError(
                    f"{len(found)} runs are named {rid.name} under {results_dir}: "
                    + ", ".join(map(str, found))
                    + "; pick one with --from DIR"
                )
            others = ", ".join(str(p) for p in found if p != named[0])
            note = f" (of the {len(found)} runs of this name, the one with the config its name composes to; not {others}: --from DIR picks one)"
            found = named
        source = found[0] if found else None
    if source is not None:
        stored = results.read_stored_config(source)
        if stored is None:
            raise ConfigError(f"--from {source}: no stored config (.hydra/config.yaml) there")
        stored_name = run_name_of(stored)
        if stored_name != rid.name:
            spelled = f"{name!r}" + (f" ({rid.name})" if rid.name != name else "")
            raise ConfigError(
                f"run name {spelled} disagrees with --from {source}, which holds run "
                f"{stored_name}; valid: {stored_name}, or no --from to build {rid.name} from its name"
            )
        # the data group has one choice key on a stored config: data=X means data.name=X
        overrides = [f"data.name={dataset}" if o.lstrip("+").startswith("data=") else o for o in overrides]
        stored = {**stored, "data": {"name": dataset_of(stored), **stored["data"]}}
        return apply_overrides(stored, overrides), str(source) + note
    return _composed(rid, overrides), "composed from the run name"


def _composed(rid, overrides: list[str]) -> dict:
    """The config the run name ``rid`` composes to, ``overrides`` on top."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_plain(compose("config", overrides=rid.overrides() + overrides))


def _unfinished_rerun(run_dir: Path, results_dir: Path) -> bool:
    """Whether ``run_dir`` is where ``sweep.rerun`` trains its run by default and that run is not
    complete: an interrupted (or failed) rerun, which the same command resumes."""
    try:
        stored = results.read_stored_config(run_dir) or {}
    except results.StoredConfigError:
        return False
    default = results_dir / "runs" / (dataset_subdir(dataset_of(stored)) + run_dir.name)
    return run_dir.resolve() == default.resolve() and not results.is_complete(run_dir)


def _same_command(stored: list[str] | None, overrides: list[str]) -> bool:
    """Whether two override lists ask for the same run: the same keys and values in any order, in any
    spelling of a value (``lr=0.01``, ``lr=1e-2``) or the dataset (``data=X``, ``data.name=X``), where
    the run is shown (``results_dir``, ``progress``, …: execution keys) left out."""
    if stored is None:
        return False

    def meaning(items: list[str]) -> dict[str, Any] | None:
        try:
            parsed = OverridesParser.create().parse_overrides(items)
        except Exception:  # noqa: BLE001 - a stored list that does not parse is no command of ours
            return None
        out = {}
        for o in parsed:
            key = "data.name" if o.key_or_group == "data" else o.key_or_group
            if KEY_ROLES.get(key.split(".")[0]) != "execution":
                out[key] = o.value()
        return out

    return meaning(stored) is not None and meaning(stored) == meaning(list(overrides))


def _stored_overrides(run_dir: Path) -> list[str] | None:
    """The overrides a run was launched with (``.hydra/overrides.yaml``), None if unreadable."""
    import yaml

    try:
        got = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return got if isinstance(got, list) else None


def stored_job(run_dir: Path):
    """The :class:`~sweep.member.Job` that retrains the run in ``run_dir`` as it was launched: its
    ``.hydra/config.yaml`` and ``.hydra/overrides.yaml``, checked as a launch checks its jobs
    (:func:`sweep.member.check_job`). A file that is missing or not what the run wrote is refused with
    a :class:`ConfigError` naming the run directory and the file."""
    import yaml

    from sweep.member import Job, check_job

    hydra_dir = run_dir / ".hydra"
    try:
        cfg = results.read_stored_config(run_dir)
    except results.StoredConfigError as exc:
        raise ConfigError(f"cannot retry {run_dir}: {exc}") from None
    if cfg is None:
        raise ConfigError(f"cannot retry {run_dir}: {hydra_dir / 'config.yaml'} is missing")
    path = hydra_dir / "overrides.yaml"
    if not path.is_file():
        raise ConfigError(f"cannot retry {run_dir}: {path} is missing")
    try:
        overrides = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"cannot retry {run_dir}: {path} is not valid YAML ({reason})") from None
    overrides = [] if overrides is None else overrides
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"cannot retry {run_dir}: {path} does not hold a list of overrides")
    try:
        check_job(cfg, run_dir)
    except ValueError as exc:
        raise ConfigError(f"cannot retry {run_dir}: {hydra_dir / 'config.yaml'}: {exc}") from None
    return Job(cfg, run_dir, overrides)


def retry_failed(sweep_dir: Path) -> int:
    """Retrain every failed run of ``sweep_dir`` in place; 0 if none fails again. Every run is checked
    first (:func:`stored_job`): one that cannot be retried refuses the whole retry, as one bad job of a
    grid refuses the grid, before anything is written (docs/faults.md)."""
    from sweep.status import scan

    failed = [r.name for r in scan(sweep_dir).runs if r.state == "failed"]
    if not failed:
        print(f"no failed run in {sweep_dir}")
        return 0
    try:
        jobs = [stored_job(sweep_dir / name) for name in failed]
    except Exception as exc:  # noqa: BLE001 - fail closed: one line, nothing written
        print(refusal(exc, "retry"), file=sys.stderr)
        return 2
    print(f"retrying {len(jobs)} failed runs of {sweep_dir}: {', '.join(failed)}")
    from sweep.engine import train_jobs

    rows = train_jobs(jobs)
    bad = [
        n
        for n, r in zip(failed, rows, strict=True)
        if isinstance(r, BaseException) or r["status"] == "failed"
    ]
    for n, r in zip(failed, rows, strict=True):
        if isinstance(r, BaseException):
            print(f"{n}: refused: {r}", file=sys.stderr)
    return 1 if bad else 0


def output_dir(cfg: dict, out: Path | None) -> Path:
    """Where the rerun trains: ``--out`` if given, which must lie below ``results_dir`` (a path that
    leaves it is refused), else ``<results_dir>/runs/<run_name>``."""
    root = Path(cfg["results_dir"])
    if out is None:
        return root / "runs" / (dataset_subdir(dataset_of(cfg)) + run_name_of(cfg))
    writable(out, "--out")  # before resolving it: a name too long, a file on the way, …
    inside = out.resolve().is_relative_to(root.resolve()) and out.resolve() != root.resolve()
    if not inside:
        raise ConfigError(
            f"--out {str(out)!r} is not below results_dir ({root}); valid: a directory below it, e.g. "
            f"{root / 'runs' / 'long'}, or results_dir=... set to where it should go"
        )
    from sweep.grid import check_sweep_member  # the check sweep.train makes of hydra.run.dir

    check_sweep_member(cfg, out, "--out")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.rerun", description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", help="run name, e.g. L25_dense1_conv4_s0 or L25_DNN1_CNN4")
    p.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides, e.g. epochs=100")
    p.add_argument("--from", dest="source", type=Path, help="the run directory whose config to reuse")
    p.add_argument("--out", type=Path, help="output directory (default results/runs/<run_name>)")
    p.add_argument(
        "--failed", type=Path, metavar="SWEEP_DIR", help="retry every failed run of a sweep, in place"
    )
    from sweep.status import check_sweep_dir, usage_error

    p.error = usage_error  # one error: line, not argparse's usage
    try:
        args = p.parse_intermixed_args(argv)
        if args.failed is not None and (args.name or args.overrides):
            p.error(f"--failed takes one sweep directory and nothing else (got {args.failed} {args.name})")
        if args.failed is None and args.name is None:
            p.error("a run name is required (or --failed SWEEP_DIR)")
    except SystemExit as exc:  # a refused argument (status 2) or --help (0)
        return int(exc.code or 0)
    if args.failed is not None:
        try:
            if not readable(args.failed, "--failed").is_dir():
                raise PathError(f"--failed={args.failed} is not a directory; valid: a sweep directory")
            check_sweep_dir(args.failed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _resumable(retry_failed, args.failed, argv=argv)
    results_dir = Path(
        next((o.split("=", 1)[1] for o in args.overrides if o.startswith("results_dir=")), "results")
    )
    from sweep.member import check_evaluated_as, check_job  # the checks sweep.train makes, first

    try:
        cfg, origin = build_config(args.name, args.overrides, results_dir, args.source)
        out = output_dir(validate(cfg, here=True), args.out)
        check_job(cfg, out)
        check_evaluated_as(cfg, out, "--out")
    except Exception as exc:  # noqa: BLE001 - any refusal is one line, before anything is written
        print(refusal(exc, "rerun"), file=sys.stderr)
        return 2
    print(f"config: {origin}; training into {out}")
    from sweep.train import train  # imported late: it is heavy and not needed for bad names

    row = _resumable(train, cfg, out, overrides=args.overrides, argv=argv)
    if isinstance(row, int):
        return row
    return 0 if row["status"] != "failed" else 1


def _resumable(work, *args, argv: list[str] | None, **kwargs):
    """``work(*args, **kwargs)``; on Ctrl-C, one line saying where the run stopped and the command
    that resumes it, and exit status 130."""
    from sweep.engine import interrupted_line

    try:
        return work(*args, **kwargs)
    except KeyboardInterrupt as exc:
        command = ["python", "-m", "sweep.rerun", *(sys.argv[1:] if argv is None else argv)]
        print(interrupted_line(exc, command), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
