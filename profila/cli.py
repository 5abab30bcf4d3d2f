"""Command line: ``profila annotate [options] -- script.py args`` and ``profila show FILE``.

Thin on purpose: parse, check what can be checked before anything runs, call the session or a
renderer, map errors to one line on stderr and an exit status.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from profila import __version__
from profila.errors import EXIT_USAGE, ProfilaError, UsageError
from profila.model import Profile
from profila.render import json as json_renderer
from profila.render import text as text_renderer

FORMATS = {".json": "json"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except ProfilaError as exc:
        print(f"profila: {exc}", file=sys.stderr)
        return exc.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profila",
        description="Sampling profiler for Numba-compiled code: per-line shares inside @njit.",
    )
    parser.add_argument("--version", action="version", version=f"profila {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    annotate = sub.add_parser(
        "annotate",
        help="run a Python program under the profiler and print the annotated report",
        usage="profila annotate [options] -- (script.py | -m module | -c code) [args ...]",
        description="Run a Python program under gdb, sample it, and print per-line shares of "
        "the time spent in Numba-compiled code. Everything after `--` is what you would pass "
        "to `python`.",
    )
    annotate.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="samples per second per thread (default 100, up to 10000)",
    )
    _output_options(annotate)
    annotate.add_argument("--gdb", help="gdb executable (default: $PROFILA_GDB or gdb on PATH)")
    annotate.add_argument(
        "--debuginfo",
        choices=["lines", "full", "none"],
        default="lines",
        help="line info for Numba code: lines (default: line tables only, the machine code you "
        "ship), full (NUMBA_DEBUGINFO=1: changes the machine code), none",
    )
    annotate.add_argument(
        "--sampler",
        choices=["auto", "perf", "gdb"],
        default="auto",
        help="perf: perf_event_open, no stops; gdb: stops under gdb (slower); auto (default): "
        "perf where the kernel allows it, else gdb",
    )
    annotate.add_argument("target", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    show = sub.add_parser("show", help="render a saved JSON profile")
    show.add_argument("profile", help="a profile written by `annotate -o FILE.json`")
    _output_options(show)
    return parser


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", help="also write the profile here (format from the extension: .json)"
    )
    parser.add_argument(
        "--format",
        choices=sorted(set(FORMATS.values())),
        help="format of --output, when its extension does not say",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text report")
    parser.add_argument(
        "--threads",
        action="store_true",
        help="split each source line's samples by thread (a column per thread)",
    )


def _dispatch(args: list[str]) -> int:
    # Everything after the first `--` belongs to the target; without `--`, the target starts at
    # annotate's first positional argument (and a later `--` is the target's own).
    split = args.index("--") if "--" in args else len(args)
    namespace = _parser().parse_args(args[:split])
    if namespace.command == "annotate":
        after = args[split + 1 :]
        target = (
            [*namespace.target, "--", *after]
            if namespace.target and after
            else (namespace.target or after)
        )
        return _annotate(namespace, target)
    if split < len(args):
        raise UsageError("`--` only goes with `annotate`")
    return _show(namespace)


def _output_format(namespace: argparse.Namespace) -> str | None:
    if namespace.output is None:
        return None
    if namespace.format:
        return str(namespace.format)
    suffix = Path(namespace.output).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"cannot tell the format of {namespace.output!r} from its extension: "
            f"use one of {', '.join(FORMATS)} or --format"
        )
    return FORMATS[suffix]


def check_writable(path: str) -> None:
    """Fail before the run, not after it, when the profile could not be written."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot write {path}: directory {directory} does not exist")
    if target.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if (target.exists() and not os.access(target, os.W_OK)) or not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write {path}: permission denied")


def check_target(python_args: list[str]) -> None:
    """Catch a missing script or module before starting anything."""
    if not python_args:
        raise UsageError("nothing to profile: give a script, -m module or -c code after `--`")
    first = python_args[0]
    if first == "-c":
        if len(python_args) < 2:
            raise UsageError("-c needs the code to run")
        return
    if first == "-m":
        if len(python_args) < 2:
            raise UsageError("-m needs a module name")
        top = python_args[1].split(".")[0]
        if (
            importlib.machinery.PathFinder.find_spec(top, [os.getcwd(), *sys.path]) is None
            and top not in sys.builtin_module_names
        ):
            raise UsageError(
                f"no module named {top!r} (looked in the current directory and "
                "sys.path of this Python)"
            )
        return
    if first.startswith("-"):
        raise UsageError(f"unsupported Python option {first!r}: give a script, -m or -c")
    if not Path(first).is_file():
        raise UsageError(f"script not found: {first}")


def _write_output(profile: Profile, namespace: argparse.Namespace, fmt: str | None) -> None:
    if fmt is None:
        return
    rendered = json_renderer.render(profile)
    try:
        Path(namespace.output).write_text(rendered, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {namespace.output}: {exc.strerror}") from exc


def _print_report(profile: Profile, namespace: argparse.Namespace) -> None:
    color = sys.stdout.isatty() and not namespace.no_color and "NO_COLOR" not in os.environ
    width = os.get_terminal_size().columns if sys.stdout.isatty() else 100
    try:
        text = text_renderer.render(
            profile, color=color, width=max(60, width), threads=namespace.threads
        )
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head`) has gone: not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _annotate(namespace: argparse.Namespace, target: list[str]) -> int:
    if not 0 < namespace.rate <= 10000:
        raise UsageError("--rate must be between 0 and 10000 samples per second")
    fmt = _output_format(namespace)
    if namespace.output:
        check_writable(namespace.output)
    check_target(target)
    from profila import session  # the controller's imports are only needed from here on
    from profila.host.gdb import find_gdb

    gdb_path = find_gdb(namespace.gdb)
    result = session.run(
        session.RunRequest(
            target,
            namespace.rate,
            gdb_path,
            debuginfo=namespace.debuginfo,
            sampler=namespace.sampler,
        )
    )
    sys.stderr.flush()
    _print_report(result.profile, namespace)
    _write_output(result.profile, namespace, fmt)
    return result.status.shell_code


def _show(namespace: argparse.Namespace) -> int:
    fmt = _output_format(namespace)
    try:
        profile = Profile.from_json(Path(namespace.profile).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {namespace.profile}: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{namespace.profile} is not a readable profila profile: {exc}") from exc
    if namespace.output:
        check_writable(namespace.output)
    _print_report(profile, namespace)
    _write_output(profile, namespace, fmt)
    return 0


__all__ = ["EXIT_USAGE", "main"]
