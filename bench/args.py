"""The argument types the ``bench`` commands share: each refuses a bad value in argparse's one line,
naming the flag and what is valid, before the benchmark starts (issue 23, class 9).

    p = one_line_parser("python -m bench.status", __doc__)
    p.add_argument("--repeats", type=positive_int, default=5)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep.paths import PathError, writable


def one_line_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose refusals are one ``error: …; see --help`` line with status 2, as
    every entry point of the harness refuses (``sweep.status`` does the same)."""
    from sweep.status import usage_error

    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    p.error = usage_error  # type: ignore[method-assign]
    return p


def _integer(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lo:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {lo}; valid: {lo}, {lo + 1}, …")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a count of runs, repeats, steps, threads)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (untimed warm-up steps: none is a choice)."""
    return _integer(text, 0)


def integer_at_least(lo: int):
    """An argparse type: an integer >= ``lo`` (e.g. 2 images, the fewest a standard error needs)."""

    def check(text: str) -> int:
        return _integer(text, lo)

    check.__name__ = f"integer >= {lo}"  # what argparse names in its message
    return check


def run_name(text: str) -> str:
    """An argparse type: a run name (``L25_dense1_conv4``, seed optional) as :mod:`sweep.names` parses
    it, whose latent size and depths the models accept."""
    from sweep.models import Spec, SpecError, validate_latent
    from sweep.names import RunNameError, parse_run_name

    try:
        rid = parse_run_name(text)
        validate_latent(rid.latent_dim)
        Spec(rid.enc_kind, rid.enc_depth, 1).validate("encoder")
        Spec(rid.dec_kind, rid.dec_depth, 1).validate("decoder")
    except (RunNameError, SpecError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def output_path(text: str) -> Path:
    """An argparse type: a file the benchmark will write, proven creatable (:func:`sweep.paths.writable`)
    before the benchmark runs, not after."""
    try:
        return writable(text, "the file", file=True)
    except PathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
