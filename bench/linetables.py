"""What profila's line-tables-only build costs the program it measures: speed and compile time.

Three kernels (bench/linetables_target.py: the naive dither, a kernel of inlined NumPy/math
library calls, a prange kernel) each run in four configurations, interleaved round-robin so
that machine noise hits all of them alike:

    plain     python bench/linetables_target.py KERNEL S
    lines     the same, with the environment profila gives its targets (the line-tables-only
              build), but no gdb and no sampling: the build's cost alone
    profila   python -m profila annotate --rate 10 -- ... (the default build, sampled at 10 Hz
              so that the sampler's own cost stays small: the build's cost as users meet it)
    full      NUMBA_DEBUGINFO=1, no sampling: the build other tools profile, for reference

Each run prints its first call's time (compilation) and its calls/sec over S seconds. Speed
ratios are taken per round against that round's plain run, then the median over rounds.

Usage::

    python bench/linetables.py [--rounds N] [--seconds S] [--commit REV] [--write] [--json F]

``--write`` replaces this benchmark's block in docs/performance.md.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from overhead import (
    base_env,
    code_digest,
    describe_working_tree,
    export_commit,
    log,
    machine_context,
    median,
    run_command,
    tail,
    write_doc,
)

REPO = Path(__file__).resolve().parent.parent
TARGET = Path("bench") / "linetables_target.py"  # relative to the source tree benchmarked
BEGIN_MARK = "<!-- bench/linetables.py begin: generated, do not edit by hand -->"
END_MARK = "<!-- bench/linetables.py end -->"

KERNELS = ("dither", "library", "parallel")
CONFIGS = ("plain", "lines", "profila", "full")
LABELS = {
    "plain": "plain",
    "lines": "line-tables build, no profiler",
    "profila": "profila, 10 Hz",
    "full": "`NUMBA_DEBUGINFO=1`, no profiler",
}
RATE_HZ = 10
TARGET_RATIO = 0.98

COMPILE_RE = re.compile(r"^compile_s: ([0-9.]+)$", re.MULTILINE)
SPEED_RE = re.compile(r"^calls/sec: ([0-9.]+)$", re.MULTILINE)


@dataclass
class Run:
    kernel: str
    config: str
    round: int
    ok: bool
    compile_s: float | None = None
    calls_per_s: float | None = None
    debuginfo: str | None = None  # profila: the build its profile says it measured
    error: str | None = None


def lines_env(src: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment profila gives a target in its default build, computed by src's profila."""
    code = (
        "import json, os, sys\n"
        "from profila.target import target_environment\n"
        "print(json.dumps(target_environment(dict(os.environ), 'lines')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def command(config: str, kernel: str, seconds: float, src: Path, workdir: Path) -> list[str]:
    target = [str(src / TARGET), kernel, f"{seconds:g}"]
    if config == "profila":
        out = workdir / f"{kernel}.json"
        flags = ["--rate", str(RATE_HZ), "--no-color", "-o", str(out)]
        return [sys.executable, "-m", "profila", "annotate", *flags, "--", *target]
    return [sys.executable, *target]


def run_one(
    config: str,
    kernel: str,
    round_no: int,
    envs: dict[str, dict[str, str]],
    seconds: float,
    src: Path,
    workdir: Path,
) -> Run:
    profile = workdir / f"{kernel}.json"
    profile.unlink(missing_ok=True)
    argv = command(config, kernel, seconds, src, workdir)
    out = run_command(argv, envs[config], src, seconds * 10 + 120)
    run = Run(kernel, config, round_no, False)
    compiled, speed = COMPILE_RE.search(out.stdout), SPEED_RE.search(out.stdout)
    if out.timed_out:
        run.error = f"timed out: {', '.join(out.hung)}"
    elif out.returncode != 0 or compiled is None or speed is None:
        run.error = f"exit status {out.returncode}: {tail(out.stderr)}"
    else:
        run.ok = True
        run.compile_s = float(compiled.group(1))
        run.calls_per_s = float(speed.group(1))
    if run.ok and config == "profila":
        try:
            run.debuginfo = json.loads(profile.read_text()).get("debuginfo")
        except (OSError, ValueError) as exc:
            run.ok, run.error = False, f"no readable profile: {exc}"
    return run


def ratios(runs: Sequence[Run], kernel: str, config: str) -> list[float]:
    """calls/sec of config over the same round's plain run, for every round where both ran."""
    plain = {r.round: r for r in runs if r.kernel == kernel and r.config == "plain" and r.ok}
    found = []
    for r in runs:
        if r.kernel == kernel and r.config == config and r.ok and r.round in plain:
            base = plain[r.round].calls_per_s
            if base and r.calls_per_s is not None:
                found.append(r.calls_per_s / base)
    return found


def values(runs: Sequence[Run], kernel: str, config: str, name: str) -> list[float]:
    picked = [getattr(r, name) for r in runs if r.kernel == kernel and r.config == config]
    return [v for v in picked if v is not None]


def render(runs: Sequence[Run], context: dict[str, object], rounds: int, seconds: float) -> str:
    out = [
        f"Measured {context['date']} on {context['nproc']} CPUs ({context['cpu']}), "
        f"{context['gdb']}, numba {context['versions']['numba']}, "  # type: ignore[index]
        f"load average {context['loadavg_start'][0]:.1f} at the start and "  # type: ignore[index]
        f"{context['loadavg_end'][0]:.1f} at the end; "  # type: ignore[index]
        f"{rounds} rounds of {seconds:g} s per kernel and configuration, source: "
        f"{context['source']}. Command: `{context['command']}`.",
        "",
        "Speed: calls/sec relative to the same round's plain run, median (min-max) over rounds; "
        f"target >= {TARGET_RATIO}x for the profiled build.",
        "",
        "| kernel | plain calls/sec | " + " | ".join(LABELS[c] for c in CONFIGS[1:]) + " |",
        "|---|---:|" + "---:|" * (len(CONFIGS) - 1),
    ]
    for kernel in KERNELS:
        row = [kernel]
        row.append(_fmt(median(values(runs, kernel, "plain", "calls_per_s")), ".1f"))
        for config in CONFIGS[1:]:
            found = ratios(runs, kernel, config)
            cell = _fmt(median(found), ".3f", "x")
            if found:
                cell += f" ({min(found):.3f}-{max(found):.3f})"
            if config == "profila" and found:
                cell += " ok" if (median(found) or 0) >= TARGET_RATIO else " BELOW TARGET"
            row.append(cell)
        out.append("| " + " | ".join(row) + " |")
    out += [
        "",
        "First call (compilation), median seconds; in brackets the difference from plain's median.",
        "",
        "| kernel | " + " | ".join(LABELS[c] for c in CONFIGS) + " |",
        "|---|" + "---:|" * len(CONFIGS),
    ]
    for kernel in KERNELS:
        base = median(values(runs, kernel, "plain", "compile_s"))
        row = [kernel]
        for config in CONFIGS:
            m = median(values(runs, kernel, config, "compile_s"))
            cell = _fmt(m, ".2f", " s")
            if config != "plain" and m is not None and base is not None:
                cell += f" ({m - base:+.2f})"
            row.append(cell)
        out.append("| " + " | ".join(row) + " |")
    builds = sorted({r.debuginfo or "?" for r in runs if r.config == "profila" and r.ok})
    failed = [r for r in runs if not r.ok]
    out += ["", f"Build named in the profiled runs' profiles: {', '.join(builds) or 'none'}."]
    if failed:
        out.append(
            f"Failed runs: {len(failed)}; first: {failed[0].kernel}/{failed[0].config}: "
            f"{failed[0].error}"
        )
    return "\n".join(out) + "\n"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--commit", metavar="REV", help="benchmark this commit (git archive)")
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--json", type=Path, help="also save every run's numbers here")
    args = parser.parse_args(argv)

    context = machine_context()
    context["command"] = " ".join(["python bench/linetables.py", *(argv or sys.argv[1:])])
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="profila-bench-") as tmp:
        workdir = Path(tmp)
        if args.commit is not None:
            src = workdir / "src"
            context["source"] = f"commit `{export_commit(args.commit, src)}`"
        else:
            src = REPO
            context["source"] = describe_working_tree()
        digest = code_digest(src)
        env = base_env()
        env.pop("PYTHONPATH", None)
        envs = {
            "plain": env,
            "lines": lines_env(src, env),
            "profila": env,
            "full": {**env, "NUMBA_DEBUGINFO": "1"},
        }
        started = time.perf_counter()
        for round_no in range(1, args.rounds + 1):
            for kernel in KERNELS:
                for config in CONFIGS:
                    run = run_one(config, kernel, round_no, envs, args.seconds, src, workdir)
                    runs.append(run)
                    shown = (
                        f"{run.calls_per_s:.1f} calls/sec, first call {run.compile_s:.2f} s"
                        if run.ok
                        else f"FAILED {run.error}"
                    )
                    log(f"round {round_no}/{args.rounds} {kernel} {config}: {shown}")
        if code_digest(src) != digest:
            log("WARNING: profila's source changed during the run (try --commit HEAD)")
        context["elapsed_s"] = time.perf_counter() - started
    context["loadavg_end"] = os.getloadavg()
    block = render(runs, context, args.rounds, args.seconds)
    print(block, end="")
    if args.json is not None:
        raw = {"context": context, "runs": [asdict(r) for r in runs]}
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    if args.write:
        write_doc(block, BEGIN_MARK, END_MARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
