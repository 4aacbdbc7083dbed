"""Capacity matching: the integer width at which an encoder (or a decoder) of any family has the same
parameter count as every other at one latent size (``experiment=capacity_matched``, docs/protocol.md
"Capacity-matched grid").

The rule, per role (encoder, with its Gaussian head; decoder) and latent size L:

1. Count the role's module alone at each G0 family's default width (``conf/<role>/<kind>.yaml``: dense
   512, conv 32), on the meta device. The **anchor** is the geometric mean of the five counts (dense1,
   dense4, conv1, conv2, conv4), so no family is favoured on a log scale.
2. Each G0 family's width nearest the anchor is found; the **coarsest** family is the one whose count
   changes most, relatively, for one width step there (conv4, whose count grows with width², at widths
   near 20; conv1 for encoders at L = 200, whose head has 14·14·width·2L weights). Its count at that width is the **target**: a count the coarsest family meets exactly.
3. Every family takes the integer width whose count is nearest the target (a bisection: counts grow
   strictly with width), and must land within ±``TOLERANCE`` (5 %) of it; otherwise
   :class:`CapacityError` names the role, family, latent size, width and deviation.

Counts do not depend on the activation (no activation has parameters); it is taken for the spec's sake.
:func:`matched_width` is what ``${matched_width:encoder}`` in a config resolves to (registered by
:func:`sweep.hydra_setup.register`); :func:`table` gives the whole G0 table. ``python -m sweep.capacity``
prints it. Nothing here imports omegaconf.
"""

from __future__ import annotations

import bisect
import functools
import math

import torch

from sweep.models import BUILDERS, DEFAULT_WIDTH, MAX_WIDTH, Spec, count_params, validate_latent

TOLERANCE = 0.05  # every family's count within ±5 % of its role's target at each latent size
ROLES = ("encoder", "decoder")
G0_FAMILIES = (("dense", 1), ("dense", 4), ("conv", 1), ("conv", 2), ("conv", 4))
G0_LATENTS = (25, 50, 100, 200)
DEFAULT_ACTIVATION = "leaky_relu"


class CapacityError(ValueError):
    """No integer width brings a family within ``TOLERANCE`` of its role's target (or the role is
    unknown); the message names the role, family, latent size, width and deviation."""


def check_role(role: str) -> str:
    """``role`` if it is ``encoder`` or ``decoder``; :class:`CapacityError` naming the valid ones if not."""
    if role not in ROLES:
        raise CapacityError(f"matched_width role {role!r} is unknown; valid: {', '.join(ROLES)}")
    return role


def default_width(role: str, kind: str) -> int:
    """The width a family has unless a config says otherwise (``conf/<role>/<kind>.yaml``'s
    ``${default_width:}``, :data:`sweep.models.DEFAULT_WIDTH`)."""
    check_role(role)
    return DEFAULT_WIDTH[kind]


@functools.lru_cache(maxsize=8192, typed=True)
def params(
    role: str, kind: str, depth: int, width: int, latent_dim: int, activation: str = DEFAULT_ACTIVATION
) -> int:
    """Parameters of the role's module alone (an encoder with its Gaussian head, or a decoder), counted
    on the meta device: nothing is allocated."""
    spec = Spec(kind, depth, width, activation).validate(check_role(role))
    with torch.device("meta"):
        return count_params(BUILDERS[kind][ROLES.index(role)](spec, validate_latent(latent_dim)))


def nearest_width(role: str, kind: str, depth: int, latent_dim: int, target: float, activation: str) -> int:
    """The integer width in 1..MAX_WIDTH whose count is nearest ``target`` (the smaller on a tie)."""

    def count(width: int) -> int:
        return params(role, kind, depth, width, latent_dim, activation)

    widths = range(1, MAX_WIDTH + 1)
    i = bisect.bisect_left(widths, target, key=count)  # the first width whose count reaches the target
    candidates = widths[max(i - 1, 0) : i + 1]
    return min(candidates, key=lambda w: (abs(count(w) - target), w))


@functools.lru_cache(maxsize=64, typed=True)
def target(role: str, latent_dim: int) -> tuple[str, int]:
    """(coarsest family, target count) of a role at a latent size: rule steps 1 and 2."""
    latent_dim = validate_latent(latent_dim)
    default = [
        params(role, k, d, default_width(role, k), latent_dim, DEFAULT_ACTIVATION) for k, d in G0_FAMILIES
    ]
    anchor = math.exp(sum(math.log(c) for c in default) / len(default))

    def step(family: tuple[str, int]) -> tuple[float, int]:
        kind, depth = family
        w = nearest_width(role, kind, depth, latent_dim, anchor, DEFAULT_ACTIVATION)
        c = params(role, kind, depth, w, latent_dim, DEFAULT_ACTIVATION)
        return (params(role, kind, depth, w + 1, latent_dim, DEFAULT_ACTIVATION) - c) / c, c

    steps = {f"{k}{d}": step((k, d)) for k, d in G0_FAMILIES}
    coarsest = max(steps, key=lambda f: steps[f][0])
    return coarsest, steps[coarsest][1]


def matched_width(
    role: str, kind: str, depth: int, latent_dim: int, activation: str = DEFAULT_ACTIVATION
) -> int:
    """The width of family ``kind``/``depth`` whose ``role`` module has the role's target count at
    ``latent_dim`` within ±``TOLERANCE``; :class:`CapacityError` where no integer width does (a bad
    role, spec or latent size is refused first, naming it)."""
    Spec(kind, depth, 1, activation).validate(check_role(role))
    _, goal = target(role, validate_latent(latent_dim))
    width = nearest_width(role, kind, depth, latent_dim, goal, activation)
    deviation = params(role, kind, depth, width, latent_dim, activation) / goal - 1
    if abs(deviation) > TOLERANCE:
        raise CapacityError(
            f"{role} {kind}{depth} at latent_dim={latent_dim} cannot be capacity-matched: its nearest "
            f"width {width} gives {deviation:+.1%} from the target {goal} parameters; valid: within "
            f"±{TOLERANCE:.0%}"
        )
    return width


def table(latents=G0_LATENTS, families=G0_FAMILIES):
    """A pandas DataFrame, one row per role × latent size × family: width, params, target, deviation
    (params / target − 1), and whether the family is the coarsest (the one that set the target)."""
    import pandas as pd  # here only: every entry point imports this module (the resolver) without pandas

    rows = []
    for role in ROLES:
        for latent in latents:
            coarsest, goal = target(role, latent)
            for kind, depth in families:
                width = matched_width(role, kind, depth, latent)
                count = params(role, kind, depth, width, latent, DEFAULT_ACTIVATION)
                rows.append(
                    {
                        "role": role,
                        "latent_dim": latent,
                        "family": f"{kind}{depth}",
                        "width": width,
                        "params": count,
                        "target": goal,
                        "deviation": count / goal - 1,
                        "coarsest": f"{kind}{depth}" == coarsest,
                    }
                )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m sweep.capacity``: the matched width of every G0 family per role and latent size, with
    its parameter count, the role's target and the deviation (no options; ``--help`` says so)."""
    import argparse

    argparse.ArgumentParser(
        prog="python -m sweep.capacity",
        description="Print the capacity-matched width of every G0 family per role and latent size, with its "
        "parameter count, the target and the deviation (docs/protocol.md 'Capacity-matched grid').",
    ).parse_args(argv)
    print(table().to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
