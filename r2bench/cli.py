"""The ``r2bench`` command line: each verb is a thin call into the library.

Verbs live in ``r2bench/commands/<verb>.py`` (underscores become dashes) and are
discovered at start-up. Each module defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``, and imports anything heavy
inside ``run`` so that ``r2bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from r2bench.errors import R2BenchError
from r2bench.version import __version__


def _command_modules():
    import r2bench.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        yield info.name.replace("_", "-"), importlib.import_module(f"r2bench.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r2bench",
        description="Frozen, reproducible benchmarks for LLM-based recommendation (Reasoning to Rank).",
    )
    parser.add_argument("--version", action="version", version=f"r2bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _config_options=getattr(module, "ACCEPTS_CONFIG_OPTIONS", False))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Verbs that set ACCEPTS_CONFIG_OPTIONS take unknown --key=value options as config
    # overrides (``r2bench run --method sasrec --epochs=3``); every other verb rejects them.
    args, leftover = parser.parse_known_args(argv)
    if leftover and not getattr(args, "_config_options", False):
        parser.error(f"unrecognized arguments: {' '.join(leftover)}")
    args.option_overrides = leftover
    # the arguments as typed, for the commands that record their own command line
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        if leftover:
            from r2bench.config import option_overrides

            args.option_overrides = option_overrides(leftover)
        return int(args._run(args) or 0)
    except R2BenchError as exc:
        if args.verbose:
            raise
        print(f"r2bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `r2bench report runs/ | head`: the reader left; the files are written
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
