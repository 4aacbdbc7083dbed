"""vae-sweep training package: data, models, losses, training, evaluation, results I/O.

Run as ``python -m sweep.<tool>`` (or ``analysis.…``, ``bench.…``, whose packages call
:func:`one_line_ctrl_c` too), a Ctrl-C that no tool catches (one pressed while Python imports torch,
before the tool's own handler exists) ends with one line, not a traceback; the exit status stays
Python's for SIGINT (130). Imported as a library, nothing changes."""

import sys


def one_line_ctrl_c() -> None:
    """Under ``python -m`` (while the module is being located, ``sys.argv[0]`` is ``"-m"``, as Python's
    documentation of the flag says), print an uncaught KeyboardInterrupt as one line."""
    if sys.argv[:1] != ["-m"]:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt) and value.__context__ is None:  # not while handling an error
            print(
                "interrupted: stopped by Ctrl-C; every file is written whole or not at all, so the same "
                "command starts again cleanly",
                file=sys.stderr,
            )
        else:
            previous(kind, value, tb)

    sys.excepthook = hook


one_line_ctrl_c()
