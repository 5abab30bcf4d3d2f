"""Command line: ``profila annotate [options] -- script.py args`` and ``profila show FILE``.

Thin on purpose: parse, check what can be checked before anything runs, call the session or a
renderer, map errors to one line on stderr and an exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from profila import __version__
from profila.asm import AsmFunction
from profila.errors import EXIT_USAGE, ProfilaError, UsageError
from profila.model import Profile
from profila.render import asm as asm_renderer
from profila.render import html as html_renderer
from profila.render import json as json_renderer
from profila.render import speedscope as speedscope_renderer
from profila.render import text as text_renderer

FORMATS = {".json": "json", ".html": "html", ".speedscope.json": "speedscope"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except ProfilaError as exc:
        print(f"profila: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C before the target started (or after it ended): nothing is left running.
        print("profila: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


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
    _asm_options(annotate)
    annotate.add_argument("target", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    show = sub.add_parser("show", help="render a saved JSON profile")
    show.add_argument("profile", help="a profile written by `annotate -o FILE.json`")
    _output_options(show)
    _asm_options(show)
    _diff_parser(sub)
    return parser


def _asm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--asm",
        nargs="?",
        const="",
        metavar="NAME",
        help="also show the machine code with per-instruction samples and source lines: of the "
        f"{asm_renderer.TOP} hottest Numba functions, or with --asm=NAME of the function NAME",
    )
    parser.add_argument(
        "--asm-all",
        action="store_true",
        help="with --asm: whole functions, not only the hot regions (implies --asm)",
    )


def _diff_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = sub.add_parser(
        "diff",
        help="compare two saved profiles: what moved, by line and function",
        description="Compare two JSON profiles by share of running samples (percentage "
        "points), matching lines by file, function and source text. Exit status: 0 no line or "
        "function grew more than --fail-above, 1 some did (they are named on stderr), 2 a "
        "profile could not be read.",
    )
    diff.add_argument("base", help="the reference profile (e.g. from the main branch)")
    diff.add_argument("new", help="the profile to check")
    diff.add_argument(
        "--fail-above",
        type=float,
        metavar="PP",
        help="exit 1 when a line's or function's share grew by more than PP percentage points",
    )
    diff.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    diff.add_argument(
        "--limit", type=int, default=25, help="rows shown per table in text (default 25)"
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        help="also write the profile here (format from the extension: .json, .html, "
        ".speedscope.json)",
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
    namespace = _parser().parse_args(_bare_asm(args[:split], split < len(args)))
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
    if namespace.command == "diff":
        return _diff(namespace)
    return _show(namespace)


def _bare_asm(args: list[str], has_separator: bool) -> list[str]:
    """A bare ``--asm`` takes no value (a name is given as ``--asm=NAME``): without this, it
    would swallow the next word, e.g. the profile of ``show --asm p.json``. Without ``--``,
    annotate's target starts at its first word, so only the words before it are options."""
    if not has_separator and args[:1] == ["annotate"]:
        return [args[0], *_bare_asm_options(args[1:])]
    return ["--asm=" if a == "--asm" else a for a in args]


# annotate's options that take a value as the next word (for _bare_asm_options).
_VALUE_OPTIONS = {"--rate", "-o", "--output", "--format", "--gdb", "--debuginfo", "--sampler"}


def _bare_asm_options(args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-"):
            return out + args[i:]  # the target and its arguments, untouched
        out.append("--asm=" if a == "--asm" else a)
        if a in _VALUE_OPTIONS and i + 1 < len(args):
            out.append(args[i + 1])
            i += 1
        i += 1
    return out


def _output_format(namespace: argparse.Namespace) -> str | None:
    if namespace.output is None:
        return None
    if namespace.format:
        return str(namespace.format)
    name = Path(namespace.output).name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):  # .speedscope.json before .json
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise UsageError(
        f"cannot tell the format of {namespace.output!r} from its extension: "
        f"use one of {', '.join(FORMATS)} or --format"
    )


def check_writable(path: str) -> None:
    """Fail before the run, not after it, when the profile could not be written."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        if directory.exists():
            raise UsageError(f"cannot write {path}: {directory} is not a directory")
        raise UsageError(f"cannot write {path}: directory {directory} does not exist")
    if target.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if (target.exists() and not os.access(target, os.W_OK)) or not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write {path}: permission denied")
    _try_writing(target)


def _try_writing(target: Path) -> None:
    """Create (then remove) or open the file for real: access() says yes to root on read-only
    places such as /proc, or a read-only mount seen through a writable-looking directory."""
    try:
        if not target.exists():
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(target)
        elif target.is_file():
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        raise UsageError(
            f"cannot write {target}: {exc.strerror} (choose a writable directory)"
        ) from exc


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
    rendered = _render(profile, fmt)
    try:
        Path(namespace.output).write_text(rendered, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {namespace.output}: {exc.strerror}") from exc


def _render(profile: Profile, fmt: str) -> str:
    if fmt == "html":
        return html_renderer.render(profile)
    if fmt == "speedscope":
        return speedscope_renderer.render(profile)
    return json_renderer.render(profile)


def _print_report(profile: Profile, namespace: argparse.Namespace) -> None:
    _print(
        namespace,
        lambda color, width: text_renderer.render(
            profile, color=color, width=width, threads=namespace.threads
        ),
    )


def _print(namespace: argparse.Namespace, render: Callable[[bool, int], str]) -> None:
    """Print ``render(color, width)`` for this terminal (or plain, 100 wide, when piped)."""
    tty = sys.stdout.isatty()
    color = tty and not namespace.no_color and "NO_COLOR" not in os.environ
    try:
        width = max(60, os.get_terminal_size().columns) if tty else 100
        sys.stdout.write(render(color, width))
        sys.stdout.flush()
    except OSError:
        # The reader (e.g. `| head`) has gone (EPIPE), or the terminal has (EIO): not an error,
        # and the -o profile is still to be written. Point stdout at /dev/null so the
        # interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _asm_choice(profile: Profile, namespace: argparse.Namespace) -> list[AsmFunction] | None:
    """The functions for the assembly view (None: no --asm or --asm-all given)."""
    if namespace.asm is None and not namespace.asm_all:
        return None
    chosen = asm_renderer.select(profile, namespace.asm or None)
    if namespace.asm and not chosen:
        known = ", ".join(asm_renderer.names(profile)) or "none"
        raise UsageError(
            f"no sampled Numba function named {namespace.asm!r} for --asm "
            f"(functions with samples: {known})"
        )
    return chosen


def _print_asm(
    profile: Profile, chosen: list[AsmFunction] | None, namespace: argparse.Namespace
) -> None:
    """The assembly view, after the report."""
    if chosen is None:
        return
    _print(
        namespace,
        lambda color, width: asm_renderer.render(
            profile, chosen, whole=namespace.asm_all, color=color, width=width
        ),
    )


def _annotate(namespace: argparse.Namespace, target: list[str]) -> int:
    if not 0 < namespace.rate <= 10000:
        raise UsageError("--rate must be more than 0 and at most 10000 samples per second")
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
    with contextlib.suppress(OSError):  # stderr may be a terminal that has gone
        sys.stderr.flush()
    _print_report(result.profile, namespace)
    try:
        _print_asm(result.profile, _asm_choice(result.profile, namespace), namespace)
    except UsageError as exc:
        # After the run, the target's exit status stays the answer: say it, do not fail.
        print(f"profila: {exc}", file=sys.stderr)
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
    chosen = _asm_choice(profile, namespace)  # a bad --asm=NAME fails before anything prints
    _print_report(profile, namespace)
    _print_asm(profile, chosen, namespace)
    _write_output(profile, namespace, fmt)
    return 0


def _load(path: str) -> Profile:
    try:
        return Profile.from_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a readable profila profile: {exc}") from exc


def _diff(namespace: argparse.Namespace) -> int:
    from profila.diff import chance_change, compare
    from profila.render import diff as diff_renderer

    if namespace.fail_above is not None and not namespace.fail_above >= 0:
        raise UsageError("--fail-above must be a number of percentage points, 0 or more")
    if namespace.limit < 1:
        raise UsageError("--limit must be 1 or more")
    diff = compare(_load(namespace.base), _load(namespace.new))
    if namespace.format == "json":
        sys.stdout.write(diff_renderer.render_json(diff, fail_above=namespace.fail_above))
    else:
        names = (namespace.base, namespace.new)
        sys.stdout.write(diff_renderer.render_text(diff, names, limit=namespace.limit))
    sys.stdout.flush()
    if namespace.fail_above is None:
        return 0
    floor = chance_change(diff.base.running, diff.new.running)
    if math.isinf(floor):
        print(
            "profila: warning: too few samples for --fail-above: a profile has fewer than 2 "
            "running samples, so nothing can be concluded",
            file=sys.stderr,
        )
    elif floor > namespace.fail_above:
        print(
            f"profila: warning: too few samples for --fail-above {namespace.fail_above:g}: a "
            f"share can move by up to {floor:.1f} pp by chance (sample longer or at a higher "
            "--rate)",
            file=sys.stderr,
        )
    grown = diff.grown(namespace.fail_above)
    for row in grown:
        print(f"profila: regression: {diff_renderer.describe(diff, row)}", file=sys.stderr)
    if grown:
        print(
            f"profila: {len(grown)} line(s)/function(s) grew more than "
            f"{namespace.fail_above:g} percentage points: exit status 1",
            file=sys.stderr,
        )
        return 1
    return 0


__all__ = ["EXIT_USAGE", "main"]
