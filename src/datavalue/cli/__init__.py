"""The ``datavalue`` command: value a data set, evaluate the values, act on them, or run a
guided demo.

::

    datavalue demo                                   # 10% flipped labels, found by Data-OOB
    datavalue value --data breast_cancer --noise 0.1 --method knn-shapley --out results/bc
    datavalue evaluate results/bc                    # detection, removal/addition curves, figures
    datavalue clean results/bc                       # drop the lowest 10%, retrain, compare
    datavalue fix results/bc                         # review labels in ranked order (Koh & Liang)
    datavalue report results/bc                      # one self-contained report.html
    datavalue compare --data breast_cancer --methods data-oob,knn-shapley,loo --out results/cmp
    datavalue recommend --data movielens --user 15 --explain  # "because you rated ..."
    datavalue unlearn --data movielens --user 15 --out unl    # remove a user's ratings
    datavalue attack --data digits --test-index 3 --n-train 1,2,5,10  # training-set attack

Methods and models come from the registries :data:`datavalue.METHODS` and
:data:`datavalue.MODELS`, so a new method is on the command line as soon as it is registered.
Every error we raise on purpose (:class:`datavalue.DatavalueError`) and every file error is
printed as one line, ``datavalue: error: <message>``, with exit code 2. Any other exception
(a bug, or bad input a check missed) is printed the same way with its type and exit code 1;
``--debug`` (before the command) shows the Python traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from datavalue._core.exceptions import DatavalueError
from datavalue._core.version import __version__
from datavalue.cli import (
    actions,
    attack,
    augment,
    compare,
    demo,
    evaluate,
    explain,
    recommend,
    report,
    value,
)
from datavalue.cli._common import (
    PROG,
    _as_options,
    _file_error,
    _is_file_error,
    _one_line,
    _wrap,
)
from datavalue.cli.actions import _cmd_clean, _cmd_fix
from datavalue.cli.attack import _cmd_attack
from datavalue.cli.augment import _cmd_augment
from datavalue.cli.compare import _cmd_compare
from datavalue.cli.demo import _cmd_demo
from datavalue.cli.evaluate import _cmd_evaluate
from datavalue.cli.explain import _cmd_explain
from datavalue.cli.recommend import _cmd_recommend, _cmd_unlearn
from datavalue.cli.report import _cmd_report
from datavalue.cli.value import _cmd_value

__all__ = ["main", "build_parser"]


# ---------------------------------------------------------------------- argument parsing
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``datavalue`` command (built from the registries)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=fmt,
        description=_wrap(
            "Which training examples made this model what it is? Give every training "
        "example a value (higher = more helpful); low values point at mislabeled or harmful data."
        ),
        epilog="examples:\n"
        "  datavalue demo\n"
        "  datavalue value --data breast_cancer --noise 0.1 --out results/bc\n"
        "  datavalue evaluate results/bc\n"
        "  datavalue clean results/bc\n"
        "  datavalue report results/bc\n"
        "  datavalue compare --data breast_cancer --methods data-oob,knn-shapley --out cmp\n\n"
        "Run 'datavalue COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # Each command's function is taken from this module's namespace when the parser is built,
    # so replacing one here (monkeypatch.setattr(datavalue.cli, "_cmd_value", ...)) takes effect.
    value.add_parser(sub, fmt).set_defaults(func=_cmd_value)
    demo.add_parser(sub, fmt).set_defaults(func=_cmd_demo)
    evaluate.add_parser(sub, fmt).set_defaults(func=_cmd_evaluate)
    compare.add_parser(sub, fmt).set_defaults(func=_cmd_compare)
    actions.add_clean_parser(sub, fmt).set_defaults(func=_cmd_clean)
    actions.add_fix_parser(sub, fmt).set_defaults(func=_cmd_fix)
    report.add_parser(sub, fmt).set_defaults(func=_cmd_report)
    explain.add_parser(sub, fmt).set_defaults(func=_cmd_explain)
    augment.add_parser(sub, fmt).set_defaults(func=_cmd_augment)
    attack.add_parser(sub, fmt).set_defaults(func=_cmd_attack)
    recommend.add_recommend_parser(sub, fmt).set_defaults(func=_cmd_recommend)
    recommend.add_unlearn_parser(sub, fmt).set_defaults(func=_cmd_unlearn)
    return parser


# ---------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the ``datavalue`` command; returns the exit code (0, 2 on errors, 130 on Ctrl-C)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in run.json
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        checkpoint = getattr(args, "checkpoint", None)
        hint = (f"; the last complete round (iteration, for DVRL) is saved in {checkpoint}: add "
                "--resume to continue exactly"
                if checkpoint else "")
        print(f"{PROG}: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``datavalue ... | head``): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except DatavalueError as exc:
        if args.debug:
            raise
        message = _one_line(_as_options(str(exc)))
    except Exception as exc:
        if args.debug:
            raise
        if not _is_file_error(exc):
            # Not an error we raise on purpose: still one line, never a traceback for a user;
            # exit code 1 tells it apart from a refused input.
            print(f"{PROG}: error: {_one_line(f'{type(exc).__name__}: {exc}')} (unexpected; "
                  f"run '{PROG} --debug ...' for the traceback and report it)", file=sys.stderr)
            return 1
        message = _one_line(_file_error(exc))
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2
