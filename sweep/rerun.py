"""Rerun one configuration, named by its run name.

    python -m sweep.rerun L25_dense1_conv4_s0                 # retrain that configuration
    python -m sweep.rerun L25_DNN1_CNN4 epochs=100            # the paper's spelling; seed 0 if absent
    python -m sweep.rerun L25_dense1_conv4_s1 --from results/sweeps/paper/L25_dense1_conv4_s1

If a run of that name exists under the results directory (``results_dir=…``, default ``results``),
its exact stored config (``.hydra/config.yaml``) is reused with the overrides applied on top;
otherwise the config is composed from the name. The run trains into ``results/runs/<run_name>/``
(``results/runs/<dataset>/<run_name>/`` for a dataset other than MNIST, or ``--out DIR``), with the
same skip/resume rules as ``python -m sweep.train``. ``data=fashion_mnist`` (or ``data.name=…``) picks
the runs of that dataset when runs of both share the name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from sweep import results
from sweep.config import CONF_DIR, ConfigError, apply_overrides, to_plain, validate
from sweep.data import dataset_of
from sweep.models import SpecError
from sweep.names import RunNameError, dataset_subdir, parse_run_name, run_name_of


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
    if source is None:
        found = find_runs(results_dir, rid.name)
        if dataset is not None:
            found = [p for p in found if dataset_of(results.read_stored_config(p) or {}) == dataset]
        if len(found) > 1:
            raise ConfigError(
                f"{len(found)} runs are named {rid.name} under {results_dir}: "
                + ", ".join(map(str, found))
                + "; pick one with --from DIR"
            )
        source = found[0] if found else None
    if source is not None:
        stored = results.read_stored_config(source)
        if stored is None:
            raise ConfigError(f"--from {source}: no stored config (.hydra/config.yaml) there")
        # the data group has one choice key on a stored config: data=X means data.name=X
        overrides = [f"data.name={dataset}" if o.lstrip("+").startswith("data=") else o for o in overrides]
        stored = {**stored, "data": {"name": dataset_of(stored), **stored["data"]}}
        return apply_overrides(stored, overrides), str(source)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=rid.overrides() + overrides)
    return to_plain(cfg), "composed from the run name"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.rerun", description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="run name, e.g. L25_dense1_conv4_s0 or L25_DNN1_CNN4")
    p.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides, e.g. epochs=100")
    p.add_argument("--from", dest="source", type=Path, help="the run directory whose config to reuse")
    p.add_argument("--out", type=Path, help="output directory (default results/runs/<run_name>)")
    args = p.parse_intermixed_args(argv)
    results_dir = Path(
        next((o.split("=", 1)[1] for o in args.overrides if o.startswith("results_dir=")), "results")
    )
    try:
        cfg, origin = build_config(args.name, args.overrides, results_dir, args.source)
        validate(cfg)
    except (RunNameError, ConfigError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(cfg["results_dir"]) / "runs" / (dataset_subdir(dataset_of(cfg)) + run_name_of(cfg))
    print(f"config: {origin}; training into {out}")
    from sweep.train import train  # imported late: it is heavy and not needed for bad names

    row = train(cfg, out, overrides=args.overrides)
    return 0 if row["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
