"""What the assembly view costs at the end of a run, and what it adds to the JSON profile.

Each round profiles each target in a fresh process (as `profila annotate` would: capstone is
imported by whatever first needs it), through ``profila.session.run`` with
``session.build_records`` wrapped in a timer, and reports:

- capstone import ms: importing capstone, when nothing imported it before (once a process);
- build ms: wall time of building the records (disassembly with capstone, a line lookup per
  instruction, naming of targets), once per sampled function after sampling has ended;
- functions / instructions: how many records and instructions that was;
- JSON KB: size of the profile written by ``-o F.json`` without and with the ``asm`` section.

It also times what the view adds on the sampling path, ``Aggregator.add`` of a Numba sample
with a ``jit_pc`` against the same sample without one (a counter increment), in-process.

Usage::

    python bench/asm_cost.py [--rounds N] [--seconds S]

Medians over rounds are printed as a Markdown table (progress on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGETS = {
    "constant folding": "examples/constant_folding/add.py",
    "dither": "examples/dither/dither.py",
    "dither_optimised": "examples/dither/dither_optimised.py",
}


def one(target: str, seconds: float) -> dict[str, Any]:
    """Profile ``target`` once in this process; the figures as a dict."""
    sys.path.insert(0, str(REPO))
    from profila import session
    from profila.host.gdb import find_gdb

    timings: list[float] = []
    had_capstone: list[bool] = []
    real_build = session.build_records

    def timed(symboliser: Any, counts: Any) -> Any:
        had_capstone.append("capstone" in sys.modules)
        t0 = time.perf_counter()
        import capstone  # noqa: F401 - timed apart: a one-off cost of the process

        t1 = time.perf_counter()
        records = real_build(symboliser, counts)
        timings.extend((t1 - t0, time.perf_counter() - t1))
        return records

    session.build_records = timed  # type: ignore[assignment]
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the target's own output
    try:
        result = session.run(
            session.RunRequest([str(REPO / target), str(seconds)], 100.0, find_gdb(None))
        )
    finally:
        os.dup2(saved, 1)
    profile = result.profile
    with_asm = profile.to_json()
    without = dataclasses.replace(profile, asm=[]).to_json()
    return {
        "import_s": timings[0],
        "build_s": timings[1],
        "capstone_already_imported": had_capstone[0],
        "functions": len(profile.asm),
        "instructions": sum(len(r.instructions) for r in profile.asm),
        "numba_samples": profile.samples.get("numba", 0),
        "json_bytes": len(with_asm.encode()),
        "json_bytes_without_asm": len(without.encode()),
    }


def add_cost(n: int = 200_000) -> tuple[float, float]:
    """ns per Aggregator.add of a Numba sample, without and with a jit_pc (best of 5)."""
    sys.path.insert(0, str(REPO))
    from profila.aggregate import Aggregator
    from profila.symbols.frames import Sample, SampleKind, SourceFrame

    frames = (SourceFrame("/a.py", 3, "f"), SourceFrame("/a.py", 9, "g"))
    out = []
    for pc in (None, 0x7F0000001000):
        sample = Sample(1, SampleKind.NUMBA, frames, pc)
        best = float("inf")
        for _ in range(5):
            agg = Aggregator(100.0)
            t0 = time.perf_counter()
            for _ in range(n):
                agg.add(sample)
            best = min(best, (time.perf_counter() - t0) / n)
        out.append(best * 1e9)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.seconds)))
        return
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
    for r in range(args.rounds):
        for name, target in TARGETS.items():
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr)
            proc = subprocess.run(
                [sys.executable, __file__, "--one", target, "--seconds", str(args.seconds)],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=True,
            )
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{args.rounds} rounds, {args.seconds:g} s runs at 100 Hz, medians\n")
    print(
        "| target | capstone import ms | build ms | functions | instructions | Numba samples | "
        "JSON KB without asm | JSON KB with asm |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(x[key] for x in runs)

        print(
            f"| {name} | {1000 * med('import_s'):.1f} | {1000 * med('build_s'):.1f} | "
            f"{med('functions'):g} | "
            f"{med('instructions'):g} | {med('numba_samples'):g} | "
            f"{med('json_bytes_without_asm') / 1024:.1f} | {med('json_bytes') / 1024:.1f} |"
        )
    imported = sum(x["capstone_already_imported"] for runs in results.values() for x in runs)
    total = sum(len(runs) for runs in results.values())
    print(f"\ncapstone already imported before the build in {imported} of {total} runs")
    without, with_pc = add_cost()
    print(
        f"Aggregator.add of a Numba sample: {without:.0f} ns without a jit_pc, "
        f"{with_pc:.0f} ns with one (best of 5 x 200000)"
    )


if __name__ == "__main__":
    main()
