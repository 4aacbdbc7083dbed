"""sweep.provenance: the code state a run records (git commit, dirty flag, hash of the changes) leaves
the results tree out, tells different changes apart, and is null without git; none of it is part of a
run's identity, so the committed reproduction's runs are still the runs a relaunch would skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, make_cfg
from hydra import compose, initialize_config_dir

import sweep.engine
from sweep.config import CONF_DIR, config_diff, identity, to_plain
from sweep.jobs import job_config, job_overrides, run_dir_of
from sweep.provenance import GIT_FIELDS, git_state
from sweep.results import is_complete, read_stored_config
from sweep.train import train

REPRODUCE = ROOT / "results" / "examples" / "reproduce"


@pytest.fixture(autouse=True)
def plain_git(monkeypatch):
    """git as on a fresh machine: no global or system config (ignore rules, hooks, signing)."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def checkout(path: Path) -> Path:
    """A one-commit checkout shaped like this one: code, a tracked results tree, ignored outputs."""
    for name, text in {
        "sweep/train.py": "print('train')\n",
        "results/README.md": "schemas\n",
        "results/examples/reproduce/L25/run.txt": "stored\n",
        ".gitignore": "/results/*\n!/results/README.md\n!/results/examples/\n__pycache__/\n/outputs/\n",
    }.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def write(repo: Path, name: str, text: str = "x\n") -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)


# (case, change to the checkout, results_dirs given, dirty?)
CASES = [
    ("clean", lambda r: None, (), False),
    (
        "a tracked result rewritten",
        lambda r: write(r, "results/examples/reproduce/L25/run.txt", "new\n"),
        (),
        False,
    ),
    ("a new run under results/", lambda r: write(r, "results/examples/reproduce/L50/run.txt"), (), False),
    ("results/README.md edited", lambda r: write(r, "results/README.md", "more\n"), (), False),
    ("an ignored file", lambda r: write(r, "sweep/__pycache__/train.pyc"), (), False),
    (
        "runs in a configured results_dir",
        lambda r: write(r, "elsewhere/sweeps/a/run.txt"),
        ("elsewhere",),
        False,
    ),
    ("the same, absolute", lambda r: write(r, "elsewhere/run.txt"), ("{repo}/elsewhere",), False),
    ("code edited", lambda r: write(r, "sweep/train.py", "print('changed')\n"), (), True),
    ("a new code file", lambda r: write(r, "sweep/new.py"), (), True),
    ("a code file deleted", lambda r: (r / "sweep/train.py").unlink(), (), True),
    ("made executable", lambda r: (r / "sweep/train.py").chmod(0o755), (), True),
    (
        "results_dir elsewhere: only results/ is left out",
        lambda r: write(r, "elsewhere/run.txt"),
        ("/tmp",),
        True,
    ),
]


@pytest.mark.parametrize(("case", "change", "results_dirs", "dirty"), CASES, ids=[c[0] for c in CASES])
def test_the_dirty_flag_leaves_the_results_tree_out(tmp_path, monkeypatch, case, change, results_dirs, dirty):
    repo = checkout(tmp_path)
    monkeypatch.chdir(repo)  # a relative results_dir is resolved from where the runs are launched
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    change(repo)
    got = git_state(repo / "sweep", [d.format(repo=repo) for d in results_dirs])
    assert got["git_commit"] == head
    assert got["git_dirty"] is dirty
    assert (got["git_diff_sha256"] is not None) is dirty
    if dirty:
        assert len(got["git_diff_sha256"]) == 64 and int(got["git_diff_sha256"], 16) >= 0


def test_the_hash_is_the_same_for_the_same_changes_and_differs_for_others(tmp_path):
    a, b = checkout(tmp_path / "a"), checkout(tmp_path / "b")  # two checkouts, two commits of one tree
    hashes = {}
    for repo in (a, b):
        write(repo, "sweep/train.py", "print('changed')\n")
        write(repo, "sweep/new.py", "y = 1\n")
        write(repo, "results/examples/reproduce/L50/run.txt", f"{repo.name}\n")  # results differ: not code
        hashes[repo.name] = git_state(repo)["git_diff_sha256"]
    assert hashes["a"] == hashes["b"] is not None
    assert git_state(a)["git_diff_sha256"] == hashes["a"]  # asked again: stable
    write(b, "sweep/new.py", "y = 2\n")  # another content
    other = git_state(b)["git_diff_sha256"]
    (b / "sweep/new.py").rename(b / "sweep/renamed.py")  # the same content under another name
    renamed = git_state(b)["git_diff_sha256"]
    assert len({hashes["a"], other, renamed}) == 3
    git(a, "checkout", "--", "sweep/train.py")
    (a / "sweep/new.py").unlink()
    clean = git_state(a)
    assert clean["git_dirty"] is False and clean["git_diff_sha256"] is None


def test_before_the_first_commit_every_file_is_a_change(tmp_path):
    write(tmp_path, "sweep/train.py")
    git(tmp_path, "init", "-q")
    got = git_state(tmp_path)
    assert got["git_commit"] is None and got["git_dirty"] is True and got["git_diff_sha256"] is not None


@pytest.mark.parametrize("where", ["not a checkout", "no git installed"])
def test_without_git_every_git_field_is_null(tmp_path, monkeypatch, where):
    if where == "not a checkout":
        monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no checkout above tmp_path
        repo = tmp_path
    else:
        repo = checkout(tmp_path)
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git_state(repo) == dict.fromkeys(GIT_FIELDS)


def test_a_run_records_its_code_state_with_its_results_dir_left_out(tmp_path, monkeypatch):
    state = {"git_commit": "c" * 40, "git_dirty": True, "git_diff_sha256": "d" * 64}
    seen = []

    def spy(results_dirs):
        seen.append(set(results_dirs))
        return {**dict.fromkeys(["torch_version", "python_version", "hostname", "argv"], "?"), **state}

    monkeypatch.setattr(sweep.engine, "provenance", spy)
    cfg = make_cfg(f"results_dir={tmp_path}")
    assert train(cfg, tmp_path / "run")["status"] == "ok"
    assert seen == [{str(tmp_path)}]
    row = pq.read_table(tmp_path / "run" / "run.parquet").to_pylist()[0]
    assert {k: row[k] for k in GIT_FIELDS} == state


def test_provenance_is_no_part_of_a_runs_identity():
    stored = read_stored_config(next(REPRODUCE.glob("L*/")))
    assert not set(identity(stored)) & {*GIT_FIELDS, "torch_version", "hostname"}
    row = pq.read_table(next(REPRODUCE.glob("L*/run.parquet"))).to_pylist()[0]
    assert "git_diff_sha256" not in row  # the committed runs predate the field: analysis reads them as null


@pytest.mark.slow  # 300 configurations composed as the grid check composes them (16 s on 2 shared cores)
def test_a_relaunch_of_the_reproduction_would_skip_every_committed_run():
    """What the grid check decides for each stored run, read only (its probe of the directory writes):
    the stored config has no identity difference from a fresh composition of its grid job."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=reproduce"], return_hydra_config=True)
        cfg.hydra.overrides.task = ["experiment=reproduce"]
        cache: dict = {}
        jobs = job_overrides(cfg)
        differ = {}
        for overrides in jobs:
            job = job_config(cfg, overrides, cache)
            run_dir = REPRODUCE / run_dir_of(job).name
            assert is_complete(run_dir), run_dir
            diff = config_diff(read_stored_config(run_dir), to_plain(job))
            if diff:
                differ[run_dir.name] = diff
    assert len(jobs) == 300 and differ == {}


def test_every_committed_reproduction_run_is_what_its_name_composes_under_this_code():
    """The cheap form of the relaunch check above: each stored config (written before encoder.norm and
    decoder.norm existed) has the identity of a fresh composition of ``experiment=reproduce`` with the
    overrides its name parses to, and the name it is stored under. One composition per (encoder,
    decoder) pair; latent size and seed are set on it."""
    from sweep.names import parse_run_name, run_name_of

    stored = {p.name: read_stored_config(p) for p in sorted(REPRODUCE.glob("L*/")) if p.is_dir()}
    composed, differ = {}, {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name, cfg in stored.items():
            rid = parse_run_name(name)
            assert "norm" not in cfg["encoder"] and run_name_of(cfg) == name == rid.name
            pair = tuple(o for o in rid.overrides() if o.startswith(("encoder", "decoder")))
            if pair not in composed:
                composed[pair] = to_plain(compose("config", overrides=["experiment=reproduce", *pair]))
            fresh = {**composed[pair], "latent_dim": rid.latent_dim, "seed": rid.seed}
            if config_diff(cfg, fresh):
                differ[name] = config_diff(cfg, fresh)
    assert len(stored) == 300 and len(composed) == 25 and differ == {}


def test_runs_stored_before_the_hash_are_read_beside_new_ones(tmp_path):
    """A sweep may hold runs from before ``git_diff_sha256`` (the committed reproduction's) beside new
    ones: analysis reads both, the old runs' hash null."""
    from analysis.collect import collect
    from sweep.results import RUN_COLUMNS, write_complete, write_parquet

    new = {"run_name": "new", "status": "ok", "git_dirty": True, "git_diff_sha256": "d" * 64}
    write_parquet(tmp_path / "new" / "run.parquet", [new], RUN_COLUMNS)
    old = pq.read_table(next(REPRODUCE.glob("L*/run.parquet")))
    write_parquet(tmp_path / "old" / "run.parquet", old)
    for run in ("new", "old"):  # finished runs, as a sweep stores them
        write_complete(tmp_path / run, "ok")
    got = collect(tmp_path)
    assert got.skipped == []
    rows = {r["run_dir"]: r for r in got.to_pandas().to_dict("records")}
    assert rows["new"]["git_diff_sha256"] == "d" * 64 and pd.isna(rows["old"]["git_diff_sha256"])
    assert rows["old"]["git_dirty"] is True  # what the committed runs recorded (the results tree counted)
