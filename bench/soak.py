"""Soak: a long profiled run at a high rate; does memory stay flat, is every sample accounted?

Runs ``python -m profila annotate --rate R -o F.json -- examples/dither/dither.py S`` (dither
runs its kernel for S seconds) and every INTERVAL seconds records the resident set size
(VmRSS from /proc/PID/status) of the controller (profila), of gdb and of the target. At the end
it prints the RSS series, the first-to-last growth of each process, and the profile's sample
accounting: total, bad (unreadable or lost: the kernel's lost-record counts and the gdb
sampler's overflow counts both land there), and the effective rate against the nominal one.

Not a test: it takes as long as asked (default 10 minutes). Usage::

    nice -n 10 python bench/soak.py [--seconds 600] [--rate 1000] [--interval 30]
                                    [--sampler auto|perf|gdb] [--json F]

Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DITHER = REPO / "examples" / "dither" / "dither.py"


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return found


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--sampler", default="auto", choices=["auto", "perf", "gdb"])
    parser.add_argument("--json", help="also write the raw series here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="profila-soak-") as tmp:
        out = Path(tmp) / "soak.json"
        cmd = [
            sys.executable, "-m", "profila", "annotate", "--no-color", "--rate", str(args.rate),
            "--sampler", args.sampler, "-o", str(out), "--", str(DITHER), str(args.seconds),
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        series: list[dict[str, Any]] = []
        next_at = started + 5.0  # after start-up: the first point is the baseline
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() < next_at:
                continue
            next_at += args.interval
            point: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1)}
            point["controller_kib"] = rss_kib(proc.pid)
            for child in children(proc.pid):
                role = "gdb" if comm(child).startswith("gdb") else "target"
                point[f"{role}_kib"] = rss_kib(child)
            series.append(point)
            print(json.dumps(point), file=sys.stderr, flush=True)
        stdout, stderr = proc.communicate()
        elapsed = time.monotonic() - started
        profile = json.loads(out.read_text()) if out.exists() else None

    summary: dict[str, Any] = {
        "command": cmd[2:],
        "exit_status": proc.returncode,
        "wall_s": round(elapsed, 1),
        "series": series,
    }
    steady = [p for p in series if p["t_s"] >= 60] or series
    for role in ("controller", "gdb", "target"):
        values = [p[f"{role}_kib"] for p in steady if p.get(f"{role}_kib")]
        if values:
            summary[f"{role}_rss_kib"] = {
                "first": values[0],
                "last": values[-1],
                "min": min(values),
                "max": max(values),
            }
    if profile is not None:
        samples = profile["samples"]
        summary["samples"] = samples
        summary["sampler"] = profile.get("sampler")
        summary["duration_s"] = profile.get("duration_s")
        summary["threads"] = profile.get("threads")
    summary["target_stdout_tail"] = stdout.splitlines()[:1]
    summary["stderr"] = stderr.strip().splitlines()[-3:]
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "series"}, indent=2))
    print("t_s  controller_kib  gdb_kib  target_kib")
    for p in series:
        print(p["t_s"], p.get("controller_kib"), p.get("gdb_kib"), p.get("target_kib"))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
