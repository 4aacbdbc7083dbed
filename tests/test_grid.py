"""sweep.grid: the whole grid is checked before its first job starts."""

from __future__ import annotations

import pytest
from conftest import TINY, make_cfg
from hydra import compose, initialize_config_dir

from sweep.config import CONF_DIR
from sweep.grid import GridError, check_grid, job_overrides
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
