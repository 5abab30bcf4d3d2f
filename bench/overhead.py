"""How much profila slows a Numba program down, and what sampling rate it really achieves.

Runs examples/dither/dither.py (it compiles first, then runs its kernel for a time budget and
prints ``images/sec: N`` measured over that timed loop only) in five configurations,
interleaved round-robin so that machine noise hits all of them alike:

    A  plain                  python examples/dither/dither.py S
    B  NUMBA_DEBUGINFO=1      the same with full debug info (profila's --debuginfo full build,
                              and the one Profila 0.3.4 profiles)
    C  profila at 100 Hz      python -m profila annotate --rate 100 --no-color -o F.json -- ...
    D  profila at 1000 Hz     the same with --rate 1000
    E  Profila 0.3.4          the existing gdb-stopping profiler from PyPI, in its own venv

C and D run profila's default build; the row with the same machine code (A for the
line-tables-only build, B for --debuginfo full, read from the profiles) is their baseline.

then start-up rounds of ``python -c "import numba"`` plain and under each profiler.

Usage::

    python bench/overhead.py [--rounds N] [--seconds S] [--no-legacy] [--write] [--json F]

``--write`` replaces the block between the marker comments in docs/performance.md with the
tables printed on stdout.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DITHER = Path("examples") / "dither" / "dither.py"  # relative to the source tree benchmarked
DOC = REPO / "docs" / "performance.md"
BEGIN_MARK = "<!-- bench/overhead.py begin: generated, do not edit by hand -->"
END_MARK = "<!-- bench/overhead.py end -->"

LEGACY_VERSION = "0.3.4"
DEFAULT_LEGACY_VENV = Path(tempfile.gettempdir()) / f"profila-{LEGACY_VERSION}-venv"
# The venv gets the same versions of these as the main environment, so E differs from B only
# in the profiler.
PINNED_WITH_LEGACY = ("numba", "llvmlite", "numpy", "scikit-image")

# No end-of-line anchor: under Profila 0.3.4 the target's output passes through gdb's and can
# come out as "images/sec: 133(gdb)".
IMAGES_RE = re.compile(r"^images/sec: ([0-9]+(?:\.[0-9]+)?)", re.MULTILINE)
LEGACY_SUMMARY_RE = re.compile(
    r"\*\*Total samples:\*\* (\d+) \(([0-9.]+)% non-Numba samples, ([0-9.]+)% bad samples\)"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIGS = ("A", "B", "C", "D", "E")
LABELS = {
    "A": "plain",
    "B": "`NUMBA_DEBUGINFO=1`, no sampling",
    "C": "profila, 100 Hz",
    "D": "profila, 1000 Hz",
    "E": f"Profila {LEGACY_VERSION} (PyPI)",
}
RATES = {"C": 100, "D": 1000}

# Targets (docs/performance.md).
TARGET_SLOWDOWN_100 = 1.10
TARGET_RATE_100 = 95.0
TARGET_BAD = 0.005
TARGET_STARTUP_S = 1.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running one command


@dataclass
class Outcome:
    """One finished command: its output, wall time and CPU times."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    own_cpu_s: float  # the started process itself (all its threads), not its children
    tree_cpu_s: float  # the process and every descendant it waited for (wait4's rusage)
    timed_out: bool
    hung: list[str] = field(default_factory=list)  # on a time-out: "comm state" of each process


STATES = {"R": "running", "S": "sleeping", "D": "in disk wait", "T": "stopped"}
STATES |= {"t": "in a tracing stop", "Z": "a zombie"}


def descendants(root: int) -> list[tuple[int, str, str]]:
    """(pid, command name, state) of root and every process below it, from /proc."""
    procs: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        procs[int(entry.name)] = (int(ppid), comm, STATES.get(state, state))
    found: list[tuple[int, str, str]] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        if pid in procs:
            found.append((pid, procs[pid][1], procs[pid][2]))
        frontier += [child for child, (ppid, _, _) in procs.items() if ppid == pid]
    return found


def run_command(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout_s: float) -> Outcome:
    """Run argv to completion; measure wall time and CPU time without a shell in between.

    The process is waited for with WNOWAIT first, so its /proc/PID/stat can still be read as a
    zombie: that gives its own CPU time apart from its children's (for profila: the controller
    alone, without gdb and the target).  wait4 then reaps it and gives the whole tree's CPU.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, so a timeout can end all of it
        )
        timed_out = threading.Event()
        hung: list[str] = []

        def kill() -> None:
            # gdb may have put the target in a process group of its own: end the whole tree
            # that this command started, each process by its id, and say what state each was in.
            timed_out.set()
            tree = descendants(proc.pid)
            hung.extend(f"{comm} {state}" for _, comm, state in tree)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid, _, _ in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = time.perf_counter() - start
            own = _own_cpu_s(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Outcome(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_s=wall,
            own_cpu_s=own,
            tree_cpu_s=usage.ru_utime + usage.ru_stime,
            timed_out=timed_out.is_set(),
            hung=hung,
        )


def _own_cpu_s(pid: int) -> float:
    """utime + stime of a process (all threads, no children), from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Profila 0.3.4 in its own venv


@dataclass
class Legacy:
    python: Path
    home: Path  # a HOME holding .profila-gdb/bin/gdb -> the system gdb


def prepare_legacy(venv: Path, install: bool) -> Legacy | str:
    """Profila 0.3.4 ready to run, or the reason it is not available.

    Its package is also called ``profila``, so it lives in a venv of its own (no system site
    packages) and always runs with ``-P`` from a directory outside this checkout.
    """
    gdb = shutil.which("gdb")
    if gdb is None:
        return "no gdb on PATH (Profila 0.3.4 needs one at ~/.profila-gdb/bin/gdb)"
    python = venv / "bin" / "python"
    problem = _check_legacy(python)
    if problem is not None and install:
        log(f"setting up Profila {LEGACY_VERSION} in {venv} ...")
        made = subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return f"could not create a venv: {tail(made.stderr, 2)}"
        pins = [f"profila=={LEGACY_VERSION}"]
        for name in PINNED_WITH_LEGACY:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                pins.append(f"{name}=={importlib.metadata.version(name)}")
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *pins],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if pip.returncode != 0:
            return f"pip install {' '.join(pins)} failed: {tail(pip.stderr, 3)}"
        problem = _check_legacy(python)
    if problem is not None:
        return problem
    home = venv / "home"
    link = home / ".profila-gdb" / "bin" / "gdb"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(gdb)
    return Legacy(python=python, home=home)


def _check_legacy(python: Path) -> str | None:
    if not python.exists():
        return f"no venv at {python.parent.parent} (run without --no-install to create it)"
    code = (
        "import importlib.metadata as m, numba, skimage, profila; "
        "print(m.version('profila'), profila.__file__)"
    )
    probe = subprocess.run(
        [str(python), "-P", "-c", code],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if probe.returncode != 0:
        return f"the venv cannot import profila/numba/skimage: {tail(probe.stderr, 2)}"
    version, _, where = probe.stdout.strip().partition(" ")
    if version != LEGACY_VERSION or not where.startswith(str(python.parent.parent)):
        return f"the venv holds profila {version} from {where}, not {LEGACY_VERSION} of its own"
    return None


# ---------------------------------------------------------------------------------------------
# The configurations


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NUMBA_DEBUGINFO", None)
    env["NO_COLOR"] = "1"
    return env


@dataclass
class Config:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    json_path: Path | None = None


def dither_configs(
    src: Path, seconds: float, workdir: Path, legacy: Legacy | None
) -> dict[str, Config]:
    """A-E; A-D run from src, so that `python -m profila` imports src/profila."""
    py = sys.executable
    script = src / DITHER
    budget = f"{seconds:g}"
    env = base_env()
    debug_env = {**env, "NUMBA_DEBUGINFO": "1"}
    configs = {
        "A": Config("A", [py, str(script), budget], env, src),
        "B": Config("B", [py, str(script), budget], debug_env, src),
    }
    for name, rate in RATES.items():
        out = workdir / f"{name}.json"
        argv = [py, "-m", "profila", "annotate", "--rate", str(rate), "--no-color", "-o", str(out)]
        configs[name] = Config(name, [*argv, "--", str(script), budget], env, src, out)
    if legacy is not None:
        configs["E"] = Config(
            "E",
            [str(legacy.python), "-P", "-m", "profila", "annotate", "--", str(script), budget],
            legacy_env(legacy),
            workdir,
        )
    return configs


def legacy_env(legacy: Legacy) -> dict[str, str]:
    env = base_env()
    env.pop("PYTHONPATH", None)
    env["HOME"] = str(legacy.home)
    return env


@dataclass
class DitherRun:
    config: str
    round: int
    ok: bool
    wall_s: float
    own_cpu_s: float
    tree_cpu_s: float
    images_per_s: float | None = None
    profile: dict[str, Any] | None = None  # C, D: the JSON profile without lines/functions
    legacy_samples: int | None = None  # E: from its "Total samples" line
    legacy_bad_pct: float | None = None
    error: str | None = None
    output: str | None = None  # on a failure: the end of its stdout and stderr (JSON only)


def run_dither(config: Config, round_no: int, timeout_s: float) -> DitherRun:
    if config.json_path is not None:
        config.json_path.unlink(missing_ok=True)
    out = run_command(config.argv, config.env, config.cwd, timeout_s)
    run = DitherRun(config.name, round_no, False, out.wall_s, out.own_cpu_s, out.tree_cpu_s)
    found = IMAGES_RE.search(out.stdout)
    if out.timed_out:
        run.error = f"timed out after {timeout_s:.0f} s, killed: {', '.join(out.hung)}"
    elif out.returncode != 0:
        run.error = f"exit status {out.returncode}: {tail(out.stderr)}"
    elif found is None:
        head = " | ".join(out.stdout.strip().splitlines()[:2])
        run.error = f"no 'images/sec' line in its output, which begins: {head[:200]}"
    else:
        run.images_per_s = float(found.group(1))
        run.ok = True
    if run.ok and config.json_path is not None:
        try:
            doc = json.loads(config.json_path.read_text())
            run.profile = {k: v for k, v in doc.items() if k not in ("lines", "functions")}
        except (OSError, ValueError) as exc:
            run.ok = False
            run.error = f"no readable JSON profile: {exc}"
    if not run.ok:
        run.output = (out.stdout[-3000:] + "\n--- stderr ---\n" + out.stderr[-3000:]).strip()
    if run.ok and config.name == "E":
        summary = LEGACY_SUMMARY_RE.search(out.stdout)
        if summary is not None:
            run.legacy_samples = int(summary.group(1))
            run.legacy_bad_pct = float(summary.group(3))
    return run


@dataclass
class StartupRun:
    config: str
    round: int
    ok: bool
    wall_s: float
    value: float | None = None  # the syscall loop's calls per second
    rate_main: float | None = None  # under profila: the main thread's effective rate
    error: str | None = None


# A loop of cheap system calls for one second: profila's gdb host catches exit_group with a
# syscall catchpoint, and how much a traced system call costs shows in this number.
STAT_LOOP = (
    "import os, time\n"
    "n = 0\n"
    "start = time.perf_counter()\n"
    "while time.perf_counter() - start < 1.0:\n"
    "    os.stat('/')\n"
    "    n += 1\n"
    "print(f'stat/sec: {n / (time.perf_counter() - start):.0f}')\n"
)
# The control for it: one second of pure Python, no system calls.
SPIN_LOOP = (
    "import time\n"
    "start = time.perf_counter()\n"
    "while time.perf_counter() - start < 1.0:\n"
    "    sum(range(100))\n"
)
STAT_RE = re.compile(r"^stat/sec: ([0-9]+)\s*$", re.MULTILINE)


def startup_configs(src: Path, workdir: Path, legacy: Legacy | None) -> dict[str, Config]:
    """Short commands, plain and under each profiler; the key says which is which."""
    py = sys.executable
    env = base_env()
    out = str(workdir / "startup.json")
    profila = [py, "-m", "profila", "annotate", "--no-color", "-o", out, "--"]
    configs: dict[str, Config] = {}
    for key, code in (("numba", "import numba"), ("pass", "pass"), ("stat", STAT_LOOP)):
        configs[f"{key} plain"] = Config(f"{key} plain", [py, "-c", code], env, src)
        configs[f"{key} profila"] = Config(
            f"{key} profila", [*profila, "-c", code], env, src, Path(out)
        )
    configs["spin profila"] = Config(
        "spin profila", [*profila, "-c", SPIN_LOOP], env, src, Path(out)
    )
    if legacy is not None:
        lenv = legacy_env(legacy)
        lpy = [str(legacy.python), "-P"]
        code = ["-c", "import numba"]
        configs["numba legacy plain"] = Config("numba legacy plain", [*lpy, *code], lenv, workdir)
        configs["numba legacy"] = Config(
            "numba legacy", [*lpy, "-m", "profila", "annotate", "--", *code], lenv, workdir
        )
    return configs


def run_startup(config: Config, round_no: int) -> StartupRun:
    if config.json_path is not None:
        config.json_path.unlink(missing_ok=True)
    out = run_command(config.argv, config.env, config.cwd, timeout_s=300)
    run = StartupRun(config.name, round_no, False, out.wall_s)
    if out.timed_out or out.returncode != 0:
        run.error = f"exit status {out.returncode}: {tail(out.stderr)}"
        return run
    if config.name.startswith("stat"):
        found = STAT_RE.search(out.stdout)
        if found is None:
            run.error = f"no 'stat/sec' line in its output: {tail(out.stdout + out.stderr)}"
            return run
        run.value = float(found.group(1))
    if config.json_path is not None:
        try:
            profile = json.loads(config.json_path.read_text())
        except (OSError, ValueError) as exc:
            run.error = f"no readable JSON profile: {exc}"
            return run
        run.rate_main = profile_stats(profile)["rate_main"]
    run.ok = True
    return run


# ---------------------------------------------------------------------------------------------
# Machine context


def machine_context() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    paranoid = "unknown"
    with contextlib.suppress(OSError):
        paranoid = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
    gdb_version = "not found"
    gdb = shutil.which("gdb")
    if gdb is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            first = subprocess.run([gdb, "--version"], capture_output=True, text=True).stdout
            gdb_version = first.splitlines()[0] if first else "unknown"
    versions = {}
    for name in ("numba", "llvmlite", "numpy", "scikit-image"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "loadavg_start": os.getloadavg(),
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "perf_event_paranoid": paranoid,
        "python": platform.python_version(),
        "gdb": gdb_version,
        "versions": versions,
    }


# ---------------------------------------------------------------------------------------------
# Which profila is measured


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else None


def export_commit(rev: str, dest: Path) -> str:
    """Extract the tree of commit rev into dest (git archive: the checkout is not touched)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if commit is None:
        raise SystemExit(f"overhead.py: {rev!r} is not a commit of {REPO}")
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return commit[:12]


def code_digest(src: Path) -> str:
    """sha256 over profila's source files, to notice a tree that changes during the run."""
    digest = hashlib.sha256()
    for path in sorted((src / "profila").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def describe_working_tree() -> str:
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "profila", "examples")
    if changed is None:
        return f"the working tree of {REPO} (commit unknown)"
    if not changed:
        return f"the working tree at commit `{head}` (no changes in profila/ or examples/)"
    count = len(changed.splitlines())
    return (
        f"the working tree at commit `{head}` with {count} uncommitted change(s) in "
        "profila/ or examples/"
    )


# ---------------------------------------------------------------------------------------------
# Statistics and the report


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Results:
    context: dict[str, Any]
    rounds: int
    seconds: float
    legacy_status: str  # "ran", or why not
    dither: list[DitherRun] = field(default_factory=list)
    startup: list[StartupRun] = field(default_factory=list)

    def ok_runs(self, config: str) -> list[DitherRun]:
        return [r for r in self.dither if r.config == config and r.ok]

    def profiled_builds(self) -> list[str]:
        """The builds C and D profiled, from their JSON profiles' `debuginfo`."""
        return sorted(
            {str(r.profile.get("debuginfo")) for n in RATES for r in self.ok_runs(n) if r.profile}
        )

    def same_build(self) -> str:
        """The unprofiled row with the machine code C and D ran: B for "full", else A."""
        return "B" if self.profiled_builds() == ["full"] else "A"

    def throughput(self, config: str) -> list[float]:
        return [r.images_per_s for r in self.ok_runs(config) if r.images_per_s]

    def paired_slowdowns(self, slow: str, base: str) -> list[float]:
        """Per round: time per image of `slow` / time per image of `base` (images/sec ratio)."""
        by_round: dict[int, dict[str, float]] = {}
        for run in self.dither:
            if run.ok and run.images_per_s and run.config in (slow, base):
                by_round.setdefault(run.round, {})[run.config] = run.images_per_s
        return [r[base] / r[slow] for r in by_round.values() if slow in r and base in r]

    def paired_startup(self, profiled: str, plain: str) -> list[float]:
        by_round: dict[int, dict[str, float]] = {}
        for run in self.startup:
            if run.ok and run.config in (profiled, plain):
                by_round.setdefault(run.round, {})[run.config] = run.wall_s
        return [r[profiled] - r[plain] for r in by_round.values() if profiled in r and plain in r]

    def errors(self) -> list[str]:
        found = [f"{r.config} round {r.round}: {r.error}" for r in self.dither if r.error]
        found += [
            f"start-up {r.config} round {r.round}: {r.error}" for r in self.startup if r.error
        ]
        return found


def profile_stats(profile: dict[str, Any]) -> dict[str, float]:
    samples = profile["samples"]
    threads = profile["threads"]
    duration = profile["duration_s"]
    running = samples["total"] - samples["idle"]
    busiest = max((t["samples"] + t["idle"] for t in threads), default=0)
    main = min(threads, key=lambda t: t["tid"]) if threads else {"samples": 0, "idle": 0}
    return {
        "duration_s": duration,
        "running": running,
        "bad_share": samples["bad"] / running if running else float("nan"),
        "rate_report": busiest / duration if duration > 0 else float("nan"),
        "rate_main": (main["samples"] + main["idle"]) / duration if duration > 0 else float("nan"),
    }


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def fmt_range(values: Sequence[float], spec: str, suffix: str = "") -> str:
    """The median, then min-max in brackets when there is more than one value."""
    if not values:
        return "n/a"
    mid = f"{statistics.median(values):{spec}}{suffix}"
    if len(values) == 1:
        return mid
    return f"{mid} ({min(values):{spec}}–{max(values):{spec}})"


def verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "not measured"
    return "met" if ok(value) else "**missed**"


def render(res: Results) -> str:
    ctx = res.context
    load = ", ".join(f"{x:.2f}" for x in ctx["loadavg_start"])
    load_end = ", ".join(f"{x:.2f}" for x in ctx.get("loadavg_end", ()))
    v = ctx["versions"]
    lines = [
        f"Measured {ctx['date']} by `{ctx['command']}` "
        f"({ctx.get('elapsed_s', 0):.0f} s in all), on {ctx['source']}.",
        "",
        f"- machine: {ctx['nproc']} CPUs ({ctx['usable_cpus']} usable), {ctx['cpu']}; "
        f"kernel {ctx['kernel']}; perf_event_paranoid {ctx['perf_event_paranoid']}",
        f"- load average (1, 5, 15 min) at start: {load}; at end: {load_end}",
        f"- Python {ctx['python']}, numba {v['numba']}, llvmlite {v['llvmlite']}, "
        f"numpy {v['numpy']}, scikit-image {v['scikit-image']}; {ctx['gdb']}",
        f"- Profila {LEGACY_VERSION}: {res.legacy_status}",
        "",
        "Throughput of `examples/dither/dither.py` over its timed loop (median over rounds, "
        "min–max in brackets); slowdown = time per image relative to the row named, median of "
        "the per-round ratios; wall = the whole command, start-up and compilation included.",
        "",
        "| row | configuration | images/sec | slowdown | wall s | CPU s, whole command |",
        "|---|---|---|---|---|---|",
    ]
    base_row = res.same_build()
    builds = ", ".join(f"`{b}`" for b in res.profiled_builds()) or "unknown"
    against = {"B": "A", "C": base_row, "D": base_row, "E": "B"}
    for name in CONFIGS:
        runs = res.ok_runs(name)
        if name == "E" and res.legacy_status != "ran":
            lines.append(f"| E | {LABELS['E']} | {res.legacy_status} | | | |")
            continue
        if not runs:
            lines.append(f"| {name} | {LABELS[name]} | failed in every round | | | |")
            continue
        slowdown = ""
        if name in against:
            base = against[name]
            slowdown = f"{name}/{base} " + fmt_range(res.paired_slowdowns(name, base), ".2f", "x")
        label = LABELS[name] + (f" (build {builds})" if name in RATES else "")
        lines.append(
            f"| {name} | {label} | {fmt_range(res.throughput(name), '.0f')} | {slowdown} "
            f"| {fmt_range([r.wall_s for r in runs], '.1f')} "
            f"| {fmt_range([r.tree_cpu_s for r in runs], '.1f')} |"
        )

    lines += [
        "",
        f"C and D profiled the {builds} build (the profiles' `debuginfo`), whose machine code "
        f"is row {base_row}'s: their slowdown against {base_row} is the cost of sampling. "
        "Profila 0.3.4 profiles the `NUMBA_DEBUGINFO=1` build, so E is set against B.",
    ]
    lines += [
        "",
        "Sampling, from the JSON profiles of C and D (median over rounds). Effective rate: "
        "(samples + idle) of a thread / `duration_s`; the report's figure takes the busiest "
        "thread, the main thread is the one with the lowest tid. Bad share: bad / (total − idle)."
        " Controller CPU: profila's own process (its threads, not gdb, not the target).",
        "",
        "| requested | effective (report) | effective (main thread) | running samples "
        "| bad share | controller CPU s | controller CPU / run |",
        "|---|---|---|---|---|---|---|",
    ]
    stats: dict[str, list[dict[str, float]]] = {}
    for name, rate in RATES.items():
        runs = [r for r in res.ok_runs(name) if r.profile is not None]
        stats[name] = [{**profile_stats(r.profile), "cpu": r.own_cpu_s} for r in runs if r.profile]
        if not stats[name]:
            lines.append(f"| {rate} Hz | failed in every round | | | | | |")
            continue
        col = {key: [s[key] for s in stats[name]] for key in stats[name][0]}
        share = [s["cpu"] / s["duration_s"] for s in stats[name]]
        lines.append(
            f"| {rate} Hz | {fmt_range(col['rate_report'], '.1f', ' Hz')} "
            f"| {fmt_range(col['rate_main'], '.1f', ' Hz')} | {fmt_range(col['running'], '.0f')} "
            f"| {fmt_range([x * 100 for x in col['bad_share']], '.2f', '%')} "
            f"| {fmt_range(col['cpu'], '.2f')} "
            f"| {fmt_range([x * 100 for x in share], '.1f', '%')} |"
        )
    marginal = None
    if stats.get("C") and stats.get("D"):
        cpu_c = median([s["cpu"] for s in stats["C"]])
        cpu_d = median([s["cpu"] for s in stats["D"]])
        run_c = median([s["running"] for s in stats["C"]])
        run_d = median([s["running"] for s in stats["D"]])
        if None not in (cpu_c, cpu_d, run_c, run_d) and run_d != run_c:
            marginal = (cpu_d - cpu_c) / (run_d - run_c) * 1e6  # type: ignore[operator]
            note = "" if marginal > 0 else " (not resolved: within the noise of these runs)"
            lines += [
                "",
                f"Marginal controller cost per running sample (difference of the medians, "
                f"1000 Hz − 100 Hz): {marginal:.0f} µs of CPU{note}.",
            ]
    legacy_runs = [r for r in res.ok_runs("E") if r.legacy_samples is not None]
    if legacy_runs:
        per_s = [r.legacy_samples / r.wall_s for r in legacy_runs if r.legacy_samples]
        lines += [
            "",
            f"Profila {LEGACY_VERSION} (E) printed, per run, a total of "
            f"{fmt_range([float(r.legacy_samples or 0) for r in legacy_runs], '.0f')} samples "
            f"(main thread only, nominally 100 Hz): "
            f"{fmt_range(per_s, '.1f', ' per second of wall time')}, "
            f"{fmt_range([r.legacy_bad_pct or 0.0 for r in legacy_runs], '.1f', '%')} "
            "of them bad by its own count.",
        ]

    lines += [
        "",
        "Start-up: wall time of short commands (median over rounds; added = median of the "
        "per-round differences from the same command run plainly in the same environment).",
        "",
        "| command | plain, wall s | profiled, wall s | added s |",
        "|---|---|---|---|",
    ]
    startup_rows = [
        ("numba", 'profila: `python -c "import numba"`'),
        ("pass", 'profila: `python -c "pass"`'),
        ("numba legacy", f'Profila {LEGACY_VERSION}: `python -c "import numba"`'),
    ]
    added: dict[str, float | None] = {}
    for key, label in startup_rows:
        profiled = key if key.endswith("legacy") else f"{key} profila"
        plain = f"{key} plain"
        walls = [r.wall_s for r in res.startup if r.config == profiled and r.ok]
        plains = [r.wall_s for r in res.startup if r.config == plain and r.ok]
        if not walls or not plains:
            if not key.endswith("legacy"):
                lines.append(f"| {label} | failed | | |")
            continue
        diff = res.paired_startup(profiled, plain)
        added[key] = median(diff)
        lines.append(
            f"| {label} | {fmt_range(plains, '.2f')} | {fmt_range(walls, '.2f')} "
            f"| {fmt_range(diff, '+.2f')} |"
        )
    stat_plain = [r.value for r in res.startup if r.config == "stat plain" and r.value]
    stat_prof = [r.value for r in res.startup if r.config == "stat profila" and r.value]
    stat_rate = [r.rate_main for r in res.startup if r.config == "stat profila" and r.rate_main]
    spin_rate = [r.rate_main for r in res.startup if r.config == "spin profila" and r.rate_main]
    if stat_plain and stat_prof:
        lines += [
            "",
            "System calls: a one-second loop of `os.stat('/')` made "
            f"{fmt_range(stat_plain, '.0f')} calls per second plainly and "
            f"{fmt_range(stat_prof, '.0f')} under profila (100 Hz), where its main thread was "
            f"sampled at an effective {fmt_range(stat_rate, '.1f', ' Hz')} (a one-second loop "
            f"of pure Python with no system calls: {fmt_range(spin_rate, '.1f', ' Hz')}).",
        ]
    wall_b = [r.wall_s for r in res.ok_runs(base_row)]
    wall_c = [r.wall_s for r in res.ok_runs("C")]
    if wall_b and wall_c:
        by_round = {r.round: r.wall_s for r in res.ok_runs(base_row)}
        diff = [r.wall_s - by_round[r.round] for r in res.ok_runs("C") if r.round in by_round]
        lines += [
            "",
            f"On the dither run itself (start-up, compilation and exit included) profila at "
            f"100 Hz added {fmt_range(diff, '+.1f', ' s')} of wall time to the same build "
            f"(C − {base_row}, per round), against the target's own budget of "
            f"{res.seconds:g} s.",
        ]

    slow_c = median(res.paired_slowdowns("C", base_row))
    c_stats = stats.get("C") or []
    d_stats = stats.get("D") or []
    rate_report = median([s["rate_report"] for s in c_stats])
    rate_main = median([s["rate_main"] for s in c_stats])
    bad_c = median([s["bad_share"] for s in c_stats])
    bad_d = median([s["bad_share"] for s in d_stats])
    startup = added.get("numba")
    lines += [
        "",
        "Targets:",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
        f"| sampling slowdown at 100 Hz (C/{base_row}) | ≤ {TARGET_SLOWDOWN_100:.2f}x "
        f"| {fmt(slow_c, '.2f', 'x')} | {verdict(slow_c, lambda x: x <= TARGET_SLOWDOWN_100)} |",
        f"| effective rate at 100 Hz, report's figure | ≥ {TARGET_RATE_100:.0f} Hz "
        f"| {fmt(rate_report, '.1f', ' Hz')} "
        f"| {verdict(rate_report, lambda x: x >= TARGET_RATE_100)} |",
        f"| effective rate at 100 Hz, main thread | ≥ {TARGET_RATE_100:.0f} Hz "
        f"| {fmt(rate_main, '.1f', ' Hz')} "
        f"| {verdict(rate_main, lambda x: x >= TARGET_RATE_100)} |",
        f"| bad samples at 100 Hz | ≤ {TARGET_BAD * 100:.1f}% "
        f"| {fmt(None if bad_c is None else bad_c * 100, '.2f', '%')} "
        f"| {verdict(bad_c, lambda x: x <= TARGET_BAD)} |",
        f"| bad samples at 1000 Hz | ≤ {TARGET_BAD * 100:.1f}% "
        f"| {fmt(None if bad_d is None else bad_d * 100, '.2f', '%')} "
        f"| {verdict(bad_d, lambda x: x <= TARGET_BAD)} |",
        f"| start-up added (`import numba`) | ≤ {TARGET_STARTUP_S:.1f} s "
        f"| {fmt(startup, '+.2f', ' s')} | {verdict(startup, lambda x: x <= TARGET_STARTUP_S)} |",
    ]
    if ctx.get("code_changed"):
        lines += [
            "",
            "**profila's source files changed while this ran: the rows may mix two versions.**",
        ]
    errors = res.errors()
    if errors:
        lines += ["", "Failed runs (left out of the medians):", ""]
        lines += [f"- {e}" for e in errors]
    return "\n".join(lines) + "\n"


def write_doc(block: str, begin: str = BEGIN_MARK, end: str = END_MARK) -> None:
    """Put ``block`` between the marker comments ``begin`` and ``end`` of docs/performance.md
    (appended with its markers if they are not there yet)."""
    text = DOC.read_text() if DOC.exists() else ""
    new = f"{begin}\n{block}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, after = rest.split(end, 1)
        text = head + new + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + new + "\n"
    DOC.write_text(text)
    log(f"wrote the tables into {DOC.relative_to(REPO)}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of A-E (default 5)")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="dither.py's time budget (default 3)"
    )
    parser.add_argument(
        "--startup-rounds", type=int, default=None, help="rounds of the start-up test (--rounds)"
    )
    parser.add_argument("--no-legacy", action="store_true", help=f"skip Profila {LEGACY_VERSION}")
    parser.add_argument(
        "--legacy-venv",
        type=Path,
        default=DEFAULT_LEGACY_VENV,
        help=f"venv for Profila {LEGACY_VERSION} (default {DEFAULT_LEGACY_VENV}; made if missing)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="use the legacy venv only if it is ready"
    )
    parser.add_argument(
        "--commit",
        metavar="REV",
        help="benchmark this commit, exported to a temporary directory (default: the working "
        "tree, as it is during the run)",
    )
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--json", type=Path, help="also save every run's raw numbers here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not args.seconds > 0:
        parser.error("--rounds must be at least 1 and --seconds positive")
    if args.startup_rounds is None:
        args.startup_rounds = args.rounds
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    context = machine_context()
    context["command"] = " ".join(
        ["python bench/overhead.py", *(sys.argv[1:] if argv is None else argv)]
    )
    log(f"{context['nproc']} CPUs, load average {context['loadavg_start']}, {context['kernel']}")

    legacy: Legacy | None = None
    if args.no_legacy:
        status = "not run (--no-legacy)"
    else:
        prepared = prepare_legacy(args.legacy_venv, install=not args.no_install)
        if isinstance(prepared, Legacy):
            legacy, status = prepared, "ran"
        else:
            status = f"not available: {prepared}"
            log(f"Profila {LEGACY_VERSION} {status}")
    res = Results(context, args.rounds, args.seconds, status)

    timeout = args.seconds * 5 + 90  # a normal run takes 4-8 times its budget here
    with tempfile.TemporaryDirectory(prefix="profila-bench-") as tmp:
        workdir = Path(tmp)
        if args.commit is not None:
            src = workdir / "src"
            commit = export_commit(args.commit, src)
            context["source"] = f"commit `{commit}` (exported with git archive)"
        else:
            src = REPO
            context["source"] = describe_working_tree()
        log(f"measuring {context['source']}")
        digest = code_digest(src)
        where = subprocess.run(
            [sys.executable, "-c", "import profila; print(profila.__file__)"],
            cwd=src,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(src)):
            raise SystemExit(f"overhead.py: `python -m profila` in {src} would import {where!r}")
        # Warm the page cache so that round 1 is not the only cold one.
        for config in startup_configs(src, workdir, legacy).values():
            if config.name.startswith("numba") and config.name.endswith("plain"):
                run_command(
                    [*config.argv[:-1], "import numba, skimage.io"], config.env, config.cwd, 300
                )

        configs = dither_configs(src, args.seconds, workdir, legacy)
        for round_no in range(1, args.rounds + 1):
            for name in CONFIGS:
                if name not in configs:
                    continue
                run = run_dither(configs[name], round_no, timeout)
                res.dither.append(run)
                shown = f"{run.images_per_s:.0f} images/sec" if run.ok else f"FAILED {run.error}"
                log(f"round {round_no}/{args.rounds} {name}: {shown}, {run.wall_s:.1f} s wall")
                failed = [r for r in res.dither if r.config == "E" and not r.ok]
                if name == "E" and len(failed) >= 2 and not res.ok_runs("E"):
                    # Never worked: report why, and stop spending time on it.
                    res.legacy_status = f"not available: it failed twice ({run.error})"
                    del configs["E"]
                    legacy = None

        startup = startup_configs(src, workdir, legacy)
        for round_no in range(1, args.startup_rounds + 1):
            for config in startup.values():
                run = run_startup(config, round_no)
                res.startup.append(run)
                shown = f"{run.wall_s:.2f} s" if run.ok else f"FAILED {run.error}"
                log(f"start-up round {round_no}/{args.startup_rounds} {config.name}: {shown}")

        context["code_changed"] = code_digest(src) != digest
        if context["code_changed"]:
            log("WARNING: profila's source files changed during the run (try --commit HEAD)")
    context["loadavg_end"] = os.getloadavg()
    context["elapsed_s"] = time.perf_counter() - started
    block = render(res)
    print(block, end="")
    if args.json is not None:
        raw = {
            "context": context,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "legacy": res.legacy_status,
            "dither": [asdict(r) for r in res.dither],
            "startup": [asdict(r) for r in res.startup],
        }
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
        log(f"raw numbers in {args.json}")
    if args.write:
        write_doc(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
