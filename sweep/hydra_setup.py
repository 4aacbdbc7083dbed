"""What Hydra must know before it composes a config of this project; each entry point calls
:func:`register` (``sweep.train`` on import, since ``@hydra.main`` composes before any of its code runs;
``sweep.rerun``, ``sweep.search``, ``sweep.status``, the benchmarks before they compose; a Slurm array
task gets them with Hydra's state from the launch). Importing a library module registers nothing.

* the OmegaConf resolver ``${run_name:}`` used by ``hydra.run.dir`` and ``hydra.sweep.subdir``: it
  validates the whole job config (so a bad value is rejected before Hydra creates any directory) and
  returns :func:`sweep.names.run_name_of` of it, the one place names are made;
* ``${dataset_suffix:}`` and ``${dataset_subdir:}``: ``""`` for MNIST, else ``_<dataset>`` /
  ``<dataset>/``, the default sweep and run paths of ``conf/config.yaml``;
* ``${matched_width:encoder}`` / ``${matched_width:decoder}``: the capacity-matched width of that role's
  family at the config's ``latent_dim`` (:func:`sweep.capacity.matched_width`, read from the role's
  ``kind``, ``depth`` and ``activation``), an integer in the resolved config, so a stored run config holds
  the width itself (``experiment=capacity_matched``);
* ``${default_width:}``: the width of the group's own ``kind`` (:data:`sweep.models.DEFAULT_WIDTH`),
  the default ``width`` of every ``conf/{encoder,decoder}/<kind>.yaml``: resolved after the overrides,
  so ``encoder.kind=res`` alone builds the width-32 model ``encoder=res`` builds (the run name holds no
  width); a kind it does not know keeps the value the validation then names with the valid kinds;
* family shorthands ``encoder=conv4`` / ``decoder=dense16`` in Hydra's ConfigStore, built in a loop
  from ``conf/{encoder,decoder}/{dense,conv}.yaml`` plus a depth, so a grid can sweep
  ``encoder: dense1,dense4,conv1,conv2,conv4`` while ``encoder=conv encoder.depth=4`` keeps working.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from sweep import names
from sweep.capacity import check_role, matched_width
from sweep.config import CONF_DIR, FAMILY_DEPTHS, to_plain
from sweep.models import DEFAULT_WIDTH
from sweep.rules import validate


def _run_name_resolver(*, _root_: DictConfig) -> str:
    return names.run_name_of(validate(to_plain(_root_)))


def _matched_width_resolver(role: str, *, _root_: DictConfig) -> int:
    spec = _root_[check_role(role)]
    return matched_width(role, spec.kind, spec.depth, _root_.latent_dim, spec.activation)


def _default_width_resolver(*, _parent_: DictConfig) -> int | str:
    kind = OmegaConf.select(_parent_, "kind", default=None)
    return DEFAULT_WIDTH.get(kind, "the kind's own")  # an unknown kind: refused with the valid ones


def _dataset(root: DictConfig) -> str | None:
    return OmegaConf.select(root, "data.name", default=None)


def register() -> None:
    """Register the resolvers and the family shorthands (idempotent: a second call changes nothing)."""
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", _run_name_resolver)
    if not OmegaConf.has_resolver("matched_width"):
        OmegaConf.register_new_resolver("matched_width", _matched_width_resolver)
    if not OmegaConf.has_resolver("default_width"):
        OmegaConf.register_new_resolver("default_width", _default_width_resolver)
    if not OmegaConf.has_resolver("dataset_suffix"):
        OmegaConf.register_new_resolver(
            "dataset_suffix", lambda *, _root_: names.dataset_suffix(_dataset(_root_))
        )
    if not OmegaConf.has_resolver("dataset_subdir"):
        OmegaConf.register_new_resolver(
            "dataset_subdir", lambda *, _root_: names.dataset_subdir(_dataset(_root_))
        )
    cs = ConfigStore.instance()
    for group in ("encoder", "decoder"):
        for kind, depths in FAMILY_DEPTHS.items():
            base = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{kind}.yaml"))
            for depth in depths:
                cs.store(group=group, name=f"{kind}{depth}", node={**base, "depth": depth})
