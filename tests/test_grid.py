"""sweep.grid: the whole grid is checked before its first job starts."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, make_cfg
from hydra import compose, initialize_config_dir

from sweep.config import CONF_DIR
from sweep.grid import GridError, check_grid, job_overrides, record_grid
from sweep.train import train


def check(*overrides: str):
    """check_grid on the multirun config of ``overrides`` (sweeps like a=1,2 only reach the sweeper)."""
    plain = [o for o in overrides if "," not in o]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=plain, return_hydra_config=True)
        cfg.hydra.overrides.task = list(overrides)
        return check_grid(cfg), job_overrides(cfg)


@pytest.mark.slow  # 300 compositions; the default tier enumerates the 50 of the ablation grid
def test_paper_grid_jobs_are_enumerated_as_hydra_launches_them(tmp_path):
    got, jobs = check("experiment=paper", f"results_dir={tmp_path}")
    assert got["runs"] == len(jobs) == 300 and got["complete"] == 0
    assert jobs[0][:4] == ["latent_dim=25", "encoder=dense1", "decoder=dense1", "seed=0"]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # checking writes nothing


def test_a_variant_the_run_name_does_not_show_is_a_collision_naming_the_key(tmp_path):
    with pytest.raises(
        GridError, match=r"would both write .*L8_dense2_dense2_s0: the run name does not show loss.reduction"
    ):
        check("experiment=smoke", f"results_dir={tmp_path}", "loss.reduction=sum,paper")


def test_the_ablation_experiment_gives_each_variant_its_own_directory(tmp_path):
    # two architectures of the grid (its 50 at one latent size and seed: the same check, 12 times longer)
    args = ["latent_dim=25", "seed=0", "encoder=dense1", "decoder=dense1,conv4"]
    got, jobs = check("experiment=paper_loss_ablation", f"results_dir={tmp_path}", *args)
    assert got["runs"] == len(jobs) == 4  # the same run names twice, once per loss.reduction: no collision
    assert (
        sorted(o for job in jobs for o in job if o.startswith("loss.reduction="))
        == ["loss.reduction=paper"] * 2 + ["loss.reduction=sum"] * 2
    )


def test_an_invalid_grid_member_is_named_before_anything_runs(tmp_path):
    with pytest.raises(
        GridError,
        match=r"encoder.depth=6\] is invalid: encoder.depth=6 is out of range for conv; valid: 1..5",
    ):
        check("experiment=smoke", f"results_dir={tmp_path}", "encoder=conv", "encoder.depth=4,6")


def test_existing_runs_are_counted_and_a_changed_config_is_refused(tmp_path):
    args = [
        "experiment=smoke",
        f"results_dir={tmp_path}",
        "epochs=1",
        *TINY,
    ]
    cfg = make_cfg(*args, "encoder=dense2", "decoder=dense2", arch=[])
    train(cfg, tmp_path / "sweeps" / "smoke" / "L8_dense2_dense2_s0")
    got, _ = check(*args)
    run_dirs = got.pop("run_dirs")  # what GridCheck records in grid.json for sweep.status
    assert got.pop("by_dir") == {tmp_path / "sweeps" / "smoke": run_dirs}  # one dataset: one grid.json
    assert len(got.pop("protocols")[tmp_path / "sweeps" / "smoke"]) == 4  # each job's settings
    assert got == {"runs": 4, "complete": 1, "sweep_dir": tmp_path / "sweeps" / "smoke"}
    assert {p.name for p in run_dirs} == {
        f"L8_{e}_{d}_s0" for e in ("dense2", "conv5") for d in ("dense2", "conv5")
    }
    with pytest.raises(
        GridError,
        match=r"L8_dense2_dense2_s0 already holds a run of a different configuration \(epochs: 1 -> 2\)",
    ):
        check(*[a if a != "epochs=1" else "epochs=2" for a in args])


def test_a_dataset_other_than_mnist_gets_its_own_sweep_directory(tmp_path):
    got, _ = check("experiment=smoke", f"results_dir={tmp_path}", "data=fashion_mnist")
    assert got["sweep_dir"] == tmp_path / "sweeps" / "smoke_fashion_mnist"
    both, jobs = check("experiment=smoke", f"results_dir={tmp_path}", "data=mnist,fashion_mnist")
    assert both["runs"] == len(jobs) == 8
    assert (
        both["sweep_dir"] == f"{tmp_path / 'sweeps' / 'smoke'}, {tmp_path / 'sweeps' / 'smoke_fashion_mnist'}"
    )


def test_two_datasets_in_one_sweep_directory_are_refused(tmp_path):
    one_dir = f"hydra.sweep.dir={tmp_path}/mixed"
    with pytest.raises(
        GridError,
        match=r"would put data.name=fashion_mnist runs into .*mixed, which holds data.name=mnist runs \(grid job",
    ):
        check("experiment=smoke", f"results_dir={tmp_path}", one_dir, "data=mnist,fashion_mnist")
    cfg = make_cfg(f"results_dir={tmp_path}", "latent_dim=8", "encoder=dense2", "decoder=dense2", arch=[])
    train(cfg, tmp_path / "mixed" / "L8_dense2_dense2_s0")  # an MNIST run already there
    with pytest.raises(
        GridError, match=r"holds data.name=mnist runs \(the run .*mixed/L8_dense2_dense2_s0\)"
    ):
        check("experiment=smoke", f"results_dir={tmp_path}", one_dir, "data=fashion_mnist")


# ------------------------------------------------------------ a sweep keeps one protocol (issue 35)
SMOKE = ["experiment=smoke", "epochs=1", *TINY]


@pytest.mark.parametrize(
    "change, refused",
    [
        (
            "eval.iwae_k=3",
            "sets eval.iwae_k=3, but the sweep .*smoke holds eval.iwae_k=2 \\(its grid.json\\)",
        ),
        ("epochs=2", "sets epochs=2, but the sweep .*smoke holds epochs=1"),
        ("loss.beta=2", "sets loss.beta=2, but the sweep .*smoke holds loss.beta=1"),
        ("data.subset=300", "sets data.subset=300, but the sweep .*smoke holds data.subset=200"),
        ("num_threads=1", None),
        ("engine.slots=1", None),
        ("progress=true", None),
        ("eval.iwae_image_chunk=7", None),
        ("hydra/launcher=joblib", None),
    ],
)
def test_a_relaunch_may_change_how_runs_execute_but_not_their_protocol(tmp_path, change, refused):
    got, _ = check(f"results_dir={tmp_path}", *SMOKE)
    record_grid(got, ["sweep.train", *SMOKE])  # the first launch records the sweep's settings
    again = [f"results_dir={tmp_path}", *SMOKE, change]
    if refused is None:
        check(*again)
        return
    with pytest.raises(GridError, match=refused):
        check(*again)


def test_a_sweep_launched_before_settings_were_recorded_keeps_its_stored_runs_protocol(tmp_path):
    import yaml

    from sweep import results

    run_dir = tmp_path / "sweeps" / "smoke" / "L8_dense2_dense2_s0"  # a run of an older launch, no grid.json
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = make_cfg(
        f"results_dir={tmp_path}", *SMOKE, "latent_dim=8", "encoder=dense2", "decoder=dense2", arch=[]
    )
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    results.write_complete(run_dir, "ok")
    check(f"results_dir={tmp_path}", *SMOKE)  # the same settings
    with pytest.raises(
        GridError, match=r"sets eval.iwae_k=5, .* holds eval.iwae_k=2 \(its runs stored there\)"
    ):
        check(f"results_dir={tmp_path}", *SMOKE, "eval.iwae_k=5")


def test_of_two_launches_checked_at_once_the_second_to_record_its_grid_is_refused(tmp_path):
    import threading

    from sweep.lock import sweep_lock

    a, _ = check(f"results_dir={tmp_path}", *SMOKE)
    b, _ = check(f"results_dir={tmp_path}", *SMOKE[: -len(TINY)], "epochs=2", *TINY)  # both pass alone
    sweep_dir = tmp_path / "sweeps" / "smoke"
    failed: list[BaseException] = []

    def launch(got):
        try:
            record_grid(got, ["sweep.train"])
        except GridError as exc:
            failed.append(exc)

    with sweep_lock(sweep_dir):  # a launch holding the lock: the other waits for it
        first = threading.Thread(target=launch, args=(a,))
        first.start()
        first.join(0.5)
        assert first.is_alive() and not (sweep_dir / "grid.json").exists()
    first.join()
    launch(b)
    assert len(failed) == 1 and "sets epochs=2, but the sweep" in str(failed[0])
    assert json.loads((sweep_dir / "grid.json").read_text())["settings"]["epochs"] == 1
