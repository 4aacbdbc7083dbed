"""``python -m sweep.slim``: a slimmed sweep is still a sweep (relaunch skips it, status reads it, the
analysis draws the same figures, tables and verdicts), holds no checkpoint, and the commands that need
one refuse it in one line. Plus the committed reproduction: its verdicts regenerate from its runs."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_cfg, spy_epochs, written_numbers
from omegaconf import OmegaConf

from analysis import figures, tables
from analysis.collect import load_sweep, only_seeds
from analysis.conditions import CONDITIONS
from sweep import evaluate, keys, projection, results, slim, status
from sweep.names import parse_run_name, run_name_of
from sweep.train import train

ROOT = Path(__file__).resolve().parent.parent
REPRODUCE = ROOT / "results" / "examples" / "reproduce"

ARCHS = (
    ["encoder=dense", "encoder.width=32", "decoder=conv", "decoder.depth=2", "latent_dim=4"],
    ["encoder=conv", "encoder.depth=1", "decoder=dense", "decoder.width=32", "latent_dim=3"],
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny real runs (TensorBoard on, so event files exist) in one sweep directory, kept pristine:
    tests slim copies of it."""
    root = tmp_path_factory.mktemp("trained") / "sweep"
    cfgs = [make_cfg("seed=1", arch=arch) for arch in ARCHS]
    for cfg in cfgs:
        assert train(cfg, root / run_name_of(cfg))["status"] == "ok"
    return root, cfgs


@pytest.fixture
def sweep_copy(trained, tmp_path):
    root, cfgs = trained
    copy = tmp_path / "sweep"
    shutil.copytree(root, copy)
    return copy, cfgs


def _draw(root: Path, out: Path) -> dict[str, bytes]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert figures.main([str(root), "--out", str(out)]) == 0
    return {k: v for k, v in _files(out).items() if not k.endswith((".pdf", ".html"))}


@pytest.mark.slow  # two full figure draws; the default tier's test_the_committed_reproduction_regenerates_its_verdicts reads a slimmed sweep
def test_a_slimmed_sweep_draws_the_same_figures_tables_and_report(sweep_copy, tmp_path):
    root, _ = sweep_copy
    before = _draw(root, tmp_path / "before")
    got = slim.slim(root)
    assert len(got["slimmed"]) == 2 and not got["left"]
    after = _draw(root, tmp_path / "after")
    assert before.keys() == after.keys() and "fig6_pca_top25.png" in before and "report.md" in before
    differ = [k for k in before if before[k] != after[k]]
    assert not differ, f"changed by slimming: {differ}"


def test_slimming_drops_checkpoints_events_and_latents_and_keeps_what_analysis_reads(sweep_copy):
    root, _ = sweep_copy
    tables_before = {
        p.relative_to(root): pq.read_table(p).to_pandas() for p in sorted(root.glob("*/*.parquet"))
    }
    slim.slim(root)
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        names = {p.name for p in run_dir.iterdir()}
        assert not names & {"best.pt", "last.pt", "latents.parquet"}
        assert not any(n.startswith("events.out.tfevents") for n in names)
        assert {
            "COMPLETE",
            "SLIMMED",
            "pca.parquet",
            "run.parquet",
            "eval.parquet",
            "epochs.parquet",
        } <= names
        assert (run_dir / ".hydra" / "config.yaml").is_file()
        assert "best.pt" in (run_dir / "SLIMMED").read_text()
    for rel, df in tables_before.items():
        if rel.name != "latents.parquet":  # rewritten without statistics: the same values
            pd.testing.assert_frame_equal(pq.read_table(root / rel).to_pandas(), df)


def test_every_parquet_file_of_a_run_carries_its_identity_through_reevaluation_and_slimming(sweep_copy):
    """Training, ``sweep.evaluate`` and ``sweep.slim`` (the re-compacted tables and ``pca.parquet``) stamp
    every parquet file of a run with its identity: that of its config, of its stored config and of its
    run row alike, and another run's is another stamp."""
    from sweep.keys import identity_digest

    root, cfgs = sweep_copy
    stamps = [identity_digest(cfg) for cfg in cfgs]
    assert len(set(stamps)) == 2
    trained = {"run.parquet", "epochs.parquet", "eval.parquet", "dims.parquet", "latents.parquet"}
    slimmed = trained - {"latents.parquet"} | {"pca.parquet"}
    for step, names in (("trained", trained), ("reevaluated", trained), ("slimmed", slimmed)):
        if step == "reevaluated":
            evaluate.reevaluate(root / run_name_of(cfgs[0]), [])
        elif step == "slimmed":
            assert len(slim.slim(root)["slimmed"]) == 2
        for cfg, stamp in zip(cfgs, stamps, strict=True):
            run_dir = root / run_name_of(cfg)
            row = pq.read_table(run_dir / "run.parquet").to_pylist()[0]
            assert identity_digest(results.read_stored_config(run_dir)) == identity_digest(row) == stamp
            got = {p.name: results.identity_of(p) for p in run_dir.glob("*.parquet")}
            assert got == dict.fromkeys(names, stamp), step


def test_a_relaunch_over_a_slimmed_sweep_trains_nothing(sweep_copy, monkeypatch):
    root, cfgs = sweep_copy
    slim.slim(root)
    seen = spy_epochs(monkeypatch)
    for cfg in cfgs:
        row = train(cfg, root / run_name_of(cfg))
        assert row["status"] == "ok"
    assert seen == []
    assert not any((root / run_name_of(c) / "best.pt").exists() for c in cfgs)


def test_status_reads_a_slimmed_sweep(sweep_copy):
    root, _ = sweep_copy
    slim.slim(root)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = status.main([str(root)])
    assert code == 0, out.getvalue()
    assert "2" in out.getvalue()


def test_evaluate_refuses_a_slimmed_run_in_one_line_and_rewrites_nothing(sweep_copy, capsys):
    root, cfgs = sweep_copy
    slim.slim(root)
    before = _files(root)
    assert evaluate.main([str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert "slimmed" in err[0] and "python -m sweep.rerun" in err[0]
    assert _files(root) == before


@pytest.mark.slow  # three full figure draws
def test_an_interrupted_slim_loses_nothing_and_a_second_one_finishes(sweep_copy, monkeypatch, tmp_path):
    root, _ = sweep_copy
    before = _draw(root, tmp_path / "before")
    real_unlink = Path.unlink

    def stop_at_latents(self, *a, **k):
        if self.name == "latents.parquet":
            raise KeyboardInterrupt
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", stop_at_latents)
    with pytest.raises(KeyboardInterrupt):
        slim.slim(root)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert _draw(root, tmp_path / "mid") == before  # stopped half-way: still the same analysis
    slim.slim(root)
    assert not list(root.glob("*/latents.parquet"))
    assert _draw(root, tmp_path / "after") == before


def _fail(run_dir: Path, error: str | None) -> None:
    """Make a finished run look failed: run.parquet says so (with ``error``), no COMPLETE."""
    row = pq.read_table(run_dir / "run.parquet").to_pylist()[0]
    results.write_parquet(run_dir / "run.parquet", [{**row, "status": "failed", "error": error}])
    (run_dir / results.COMPLETE).unlink()


def _interrupt(run_dir: Path) -> None:
    """Make a finished run look interrupted: no run.parquet, no COMPLETE (its config and epochs stay)."""
    (run_dir / "run.parquet").unlink()
    (run_dir / results.COMPLETE).unlink()


# (what is done to the first run, what slim says of it): the second run is slimmed either way
LEFT_RUNS = [
    (
        lambda d: _fail(d, "ValueError: boom\nTraceback ..."),
        "failed (ValueError: boom; python -m sweep.rerun --failed",
    ),
    (lambda d: _fail(d, None), "failed (no error recorded; python -m sweep.rerun --failed"),
    (_interrupt, "not finished (training, or interrupted: a relaunch resumes it)"),
    (
        lambda d: results.write_complete(d, "failed"),
        "status failed (retried in place by python -m sweep.rerun",
    ),
]


@pytest.mark.parametrize(
    "spoil, why", LEFT_RUNS, ids=["failed", "failed without error", "interrupted", "COMPLETE says failed"]
)
def test_unfinished_and_failed_runs_are_left_as_they_are_and_named(sweep_copy, capsys, spoil, why):
    root, cfgs = sweep_copy
    left, done = (root / run_name_of(c) for c in cfgs)
    spoil(left)
    before = {k: v for k, v in _files(root).items() if k.startswith(left.name)}
    assert slim.main([str(root)]) == 0
    named = [line for line in capsys.readouterr().out.splitlines() if "left as it is" in line]
    assert len(named) == 1 and named[0].startswith(f"{left}: left as it is: {why}"), named
    assert {k: v for k, v in _files(root).items() if k.startswith(left.name)} == before
    assert slim.is_slimmed(done) and not slim.is_slimmed(left)


def test_the_projection_is_the_same_from_latents_and_from_pca_parquet(tmp_path):
    rng = np.random.default_rng(0)
    mu = (rng.normal(size=(300, 6)) * [5, 3, 1, 1, 0.1, 0.1]).astype(np.float16).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    direct = projection.of_latents(mu, labels)
    results.write_parquet(tmp_path / "pca.parquet", projection.compact_table(direct), compact=True)
    back = projection.read_compact(tmp_path / "pca.parquet")
    np.testing.assert_array_equal(back.xy, direct.xy)
    np.testing.assert_array_equal(back.ratio, direct.ratio)
    np.testing.assert_array_equal(back.labels, labels)
    # float16 rounding of the coordinates: within half a float16 ulp (2**-11 relative) of the exact PCA
    exact, _ = projection.project(mu)
    np.testing.assert_allclose(direct.xy, exact, rtol=2**-11, atol=0)
    huge = projection.of_latents(mu * 60000, labels)  # beyond float16's range: kept in float32, finite
    assert np.isfinite(huge.xy).all()
    bad = mu.copy()
    bad[3, 0] = np.inf
    p = projection.of_latents(bad, labels)
    assert not p.all_finite and p.finite.sum() == 299 and np.isnan(p.xy).all()


def test_cli_dry_run_changes_nothing_and_a_bad_path_is_refused(sweep_copy, capsys):
    root, _ = sweep_copy
    before = _files(root)
    assert slim.main([str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would slim 2 runs" in out and "-> at most " in out
    assert _files(root) == before
    bound = sum(after for _, _, after in slim.slim(root, dry_run=True)["slimmed"])
    assert _files(root) == before
    done = sum(after for _, _, after in slim.slim(root)["slimmed"])
    assert done <= bound  # the dry run's sizes are an upper bound of what slimming leaves
    assert slim.main([str(root / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    (root.parent / "empty").mkdir()  # no sweep in it: refused, not "slimmed 0 runs"
    assert slim.main([str(root.parent / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "holds no sweep" in err[0]


@pytest.mark.parametrize("condition", CONDITIONS, ids=[c.report for c in CONDITIONS])
def test_each_committed_condition_regenerates_its_verdicts(condition):
    """A committed condition's claims.csv is what its committed runs (of its seeds) give. Verdict text
    must match exactly; the numbers to 1e-9 relative: the same float64 statistics of the same data, where
    only the order of summation (SIMD width of the CPU's numpy kernels) may differ, ~1e-15 relative per
    operation."""
    path = REPRODUCE.parent / condition.report
    if not (path / "claims.csv").is_file():
        pytest.skip(f"no committed report of {condition.report} yet (its sweep is still training)")
    sweep = load_sweep(REPRODUCE.parent / condition.sweep)
    assert not sweep.skipped
    if condition.seeds is not None:
        sweep = only_seeds(sweep, condition.seeds)
    from analysis import pc_probe

    got = tables.claims_table(pc_probe.with_pc2_probe(sweep))  # the runs as analysis.figures reads them
    want = pd.read_csv(path / "claims.csv")
    got = pd.read_csv(io.StringIO(got.to_csv(index=False)))  # the same types as the committed file
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for col in want.columns:
        if pd.api.types.is_float_dtype(want[col]):
            np.testing.assert_allclose(got[col], want[col], rtol=1e-9, atol=0, equal_nan=True, err_msg=col)
        else:
            assert got[col].tolist() == want[col].tolist(), col


@pytest.mark.skipif(not (REPRODUCE / "claims.csv").is_file(), reason="no committed reproduction report yet")
def test_readme_states_each_conditions_verdicts_statistics_and_counts():
    """README's "What the study finds" is the published answer, one column per condition: its block is
    what ``python -m analysis.conditions`` writes from the committed reports, and for every condition
    with a committed report the header gives its configuration and run counts, and each claim's cell
    starts with claims.csv's deciding verdict and writes its statistic, interval and n configurations
    (to the precision written there); a condition without one says pending."""
    from analysis import conditions

    root = REPRODUCE.parent
    readme = (ROOT / "README.md").read_text()
    assert conditions.replace_block(readme, conditions.markdown(root)) == readme, (
        "README's conditions block is stale: python -m analysis.conditions results/examples --readme README.md"
    )
    headers, cells = conditions.table(root)
    assert [h.split(" (")[0] for h in headers] == [c.label for c in conditions.CONDITIONS]
    for header, condition in zip(headers, conditions.CONDITIONS, strict=True):
        sweep = root / condition.report
        if not (sweep / "claims.csv").is_file():
            assert all(cells[c][header] == "pending" for c in cells), header
            continue
        want = pd.read_csv(sweep / "claims.csv")
        want = want[want["decides"]]
        assert sorted(cells) == sorted(want.claim), header
        n_runs = sum(
            (d / "COMPLETE").is_file()
            and (condition.seeds is None or parse_run_name(d.name).seed in condition.seeds)
            for d in (root / condition.sweep).glob("L*")
        )
        n_configs = int(want.loc[want.claim.eq("C1"), "n_configs"].iloc[0])
        assert header.endswith(f"({n_configs} configurations, {n_runs} runs)"), header
        for _, claim in want.iterrows():
            cell = cells[claim.claim][header]
            assert re.match(re.escape(claim.verdict) + r":", cell), (header, claim.claim, cell)
            written = written_numbers(cell)
            for key in ("statistic", "ci_low", "ci_high"):
                if np.isfinite(claim[key]):
                    assert any(abs(x - claim[key]) <= half for x, half in written), (header, claim.claim, key)
            if claim.n_configs:
                assert f"n = {claim.n_configs}" in cell, (header, claim.claim)


@pytest.mark.slow
def test_end_to_end_launch_slim_relaunch_status_and_figures(tmp_path):
    """The user's path, as subprocesses: a multirun, ``sweep.slim``, the same command again (it trains
    nothing and leaves every slimmed file as it is), ``sweep.status`` (exit 0: every run ok) and
    ``analysis.figures`` on the slimmed sweep."""
    from conftest import LAUNCHED, cli, snapshot, trained

    sweep = tmp_path / "sweeps" / "e2e"
    launch = [
        "sweep.train", "-m", f"hydra.sweep.dir={sweep}", f"results_dir={tmp_path}", "epochs=1", "latent_dim=3",
        "encoder=dense", "encoder.width=16", "decoder=dense,conv", "decoder.width=16", *LAUNCHED,
    ]  # fmt: skip
    first = cli(*launch)
    assert first.returncode == 0, first.stderr
    assert len(trained(first.stdout)) == 2
    assert cli("sweep.slim", str(sweep)).returncode == 0
    assert not list(sweep.glob("*/best.pt")) and len(list(sweep.glob("*/pca.parquet"))) == 2
    before = snapshot(sweep, skip=(".lock",))
    again = cli(*launch)
    assert again.returncode == 0, again.stderr
    assert trained(again.stdout) == [] and again.stdout.count("already complete (ok)") == 2
    after = snapshot(sweep, skip=(".lock",))
    runs = lambda files: {k: v for k, v in files.items() if "/" in k}  # noqa: E731 (grid.json is rewritten)
    assert runs(after) == runs(before)  # nothing of a run rewritten, nothing added
    seen = cli("sweep.status", str(sweep))
    assert seen.returncode == 0, seen.stdout + seen.stderr
    drawn = cli("analysis.figures", str(sweep), "--out", str(tmp_path / "fig"))
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "fig" / "fig6_pca_top25.png").is_file()


def test_the_30_epoch_runs_are_the_reproduction_s_seed_0_configurations_but_for_the_budget():
    """README: each seed-0 condition differs from the reproduction's seed 0 in one factor. A 30-epoch
    run's stored config is its seed-0 namesake's in every key of what it trains (architecture, seed,
    data and its order, loss, evaluation profile) but ``epochs``, and it logs the same epochs 1-10.
    Their numbers are equal only where the same CPU kernels trained both (float rounding, grown by
    training, makes a run on another CPU a replicate the size of a seed apart: README, protocol.md);
    the configuration, not the run, is what the two columns share."""
    e30 = REPRODUCE.parent / "reproduce_e30"
    pairs = [(d, REPRODUCE / d.name) for d in sorted(e30.glob("L*")) if (d / "COMPLETE").is_file()]
    if not pairs:
        pytest.skip("no committed 30-epoch run yet")
    for long_run, short_run in pairs:
        assert (short_run / "COMPLETE").is_file(), f"{long_run.name}: no complete run of it in {REPRODUCE}"
        cfgs = [
            OmegaConf.to_container(OmegaConf.load(r / ".hydra" / "config.yaml"))
            for r in (long_run, short_run)
        ]
        assert keys.config_diff(cfgs[1], cfgs[0]) == ["epochs: 10 -> 30"], long_run.name
        a = pd.read_parquet(long_run / "epochs.parquet", columns=["epoch", "split"])
        b = pd.read_parquet(short_run / "epochs.parquet", columns=["epoch", "split"])
        assert sorted(map(tuple, a[a["epoch"] <= 10].to_numpy())) == sorted(map(tuple, b.to_numpy()))
        assert sorted(a["epoch"].unique()) == list(range(1, 31)), long_run.name


RUN_FILES = ("COMPLETE", "epochs.parquet", "run.parquet", ".hydra/config.yaml", "last.pt", "best.pt")
NOT_SLIM = re.compile(r"(\.pt|latents\.parquet|events\.out\.tfevents\.[^/]*)$")


def unfinished_or_unslimmed(paths: list[str]) -> list[str]:
    """Of the run directories among ``paths`` (files as ``git ls-files`` lists them; a run directory
    holds any file of :data:`RUN_FILES`), those that are not complete and slimmed: no ``COMPLETE`` or no
    ``SLIMMED`` marker, or a file slimming drops (a checkpoint, an event file, the latents)."""
    runs: dict[str, set[str]] = {}
    for path in paths:
        for name in RUN_FILES:
            if path.endswith("/" + name):
                runs.setdefault(path[: -len(name) - 1], set())
    bad = set()
    for path in paths:
        for run, files in runs.items():
            if path.startswith(run + "/"):
                files.add(path[len(run) + 1 :])
                if NOT_SLIM.search(path):
                    bad.add(run)
    return sorted(bad | {run for run, files in runs.items() if not {"COMPLETE", "SLIMMED"} <= files})


def test_every_committed_run_is_complete_and_slimmed():
    """What git holds under results/examples is finished, slimmed runs only: a run directory added while
    it trained (``git add <sweep dir>`` beside the workers) would publish a partial run, to be read as one
    of the sweep's, and tens of MB of checkpoints. .gitignore keeps what slimming drops out of any add;
    this catches a run committed without its markers."""
    slim_run = ["s/L1_a_b_s0/" + f for f in ("COMPLETE", "SLIMMED", "epochs.parquet", ".hydra/config.yaml")]
    assert unfinished_or_unslimmed(slim_run) == []
    training = ["s/L1_a_b_s1/epochs.parquet", "s/L1_a_b_s1/.hydra/config.yaml", "s/L1_a_b_s1/last.pt"]
    unslimmed = ["s/L1_a_b_s2/" + f for f in ("COMPLETE", "run.parquet", "latents.parquet")]
    checkpoint = [*(p.replace("_s0", "_s3") for p in slim_run), "s/L1_a_b_s3/prev.pt"]
    assert unfinished_or_unslimmed(slim_run + training + unslimmed + checkpoint) == [
        "s/L1_a_b_s1", "s/L1_a_b_s2", "s/L1_a_b_s3"
    ]  # fmt: skip
    try:
        listed = subprocess.run(
            ["git", "ls-files", "results/examples"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no committed runs to read")
    assert len([p for p in listed if p.endswith("/COMPLETE")]) >= 300  # the reproduction at least
    assert unfinished_or_unslimmed(listed) == []
