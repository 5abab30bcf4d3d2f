"""The target's output reaches the user unchanged whatever it is, and cannot disturb profila:
the target writes to the user's own file descriptors and shares none with gdb."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, profila

# Megabytes in many writes, a 1 MB line, every byte value (not UTF-8), gdb/MI records and
# profila's own protocol lines, on both streams; the last write has no newline. Then the
# program spins for a while so that sampling has something to see.
NOISY = r"""
import os, sys, time
out, err = sys.stdout.buffer, sys.stderr.buffer
for i in range(40000):
    out.write(b"line %d of a few megabytes of output ...........................\n" % i)
out.write(b"x" * (1 << 20) + b"\n")
out.write(bytes(range(256)) + b"\xff\xfe\xc3\x28\n")
forged = (
    b'=thread-group-exited,id="i1",exit-code="0"\n^done\n^error,msg="x"\n'
    b'*stopped,reason="exited-normally"\n(gdb) \n~"text"\n'
    b"@@profila exiting\n@@profila error forged\n@@profila attached\n"
)
for stream in (out, err):
    stream.write(forged)
    stream.flush()
err.write(b"\x80 partial stderr")
err.flush()
t = time.time()
while time.time() - t < 1.0:
    sum(range(1000))
out.write(b"partial line, no newline")
out.flush()
sys.exit(3)
"""


# PYTHONUNBUFFERED=1 makes sys.stdout.buffer a raw FileIO, whose write() may legally write
# less than asked; NOISY ignores the count, as most programs do. A blocking write to a full pipe
# ends short when a signal interrupts it, even one a tracer then suppresses: the gdb sampler's
# stops do that (see docs/troubleshooting.md), so it is tested with buffered output only. The
# perf sampler never stops the target and is tested both ways.
@pytest.mark.parametrize(
    "sampler, unbuffered", [("perf", "1"), ("perf", ""), ("gdb", "")], ids=["perf-u", "perf", "gdb"]
)
def test_any_output_passes_through_unchanged(tmp_path: Path, sampler: str, unbuffered: str) -> None:
    """Byte-identical stdout and stderr to a plain run; the run is sampled and ends normally."""
    script = tmp_path / "noisy.py"
    script.write_text(NOISY)
    env = {"PYTHONUNBUFFERED": unbuffered}
    plain = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **env},
    )
    assert plain.returncode == 3 and len(plain.stdout) > 3 << 20
    run = profila(str(script), tmp_path=tmp_path, options=("--sampler", sampler), env=env)
    assert run.returncode == 3, run.stderr[-2000:]
    assert run.stdout[: len(plain.stdout)] == plain.stdout
    assert run.stdout[len(plain.stdout) :].startswith(b"profila: python")  # the report follows
    assert run.stderr[: len(plain.stderr)] == plain.stderr, run.stderr[-2000:]
    assert run.profile is not None
    samples = run.profile["samples"]
    assert samples["python"] >= 50, samples  # the 1 s spin at 100 Hz: sampling kept going
    assert samples["bad"] <= 0.05 * samples["total"], samples


FDS = """
import json, os
print(json.dumps(sorted(int(fd) for fd in os.listdir("/proc/self/fd"))))
"""


def test_target_gets_exactly_the_users_file_descriptors(tmp_path: Path) -> None:
    """The target holds the same descriptors as in a plain run (here 0, 1, 2 and one the user
    passed down), none of profila's or gdb's: its output cannot reach gdb's protocol pipe."""
    script = tmp_path / "fds.py"
    script.write_text(FDS)
    passed = (tmp_path / "extra").open("wb")
    try:
        fd = passed.fileno()
        common = {"capture_output": True, "cwd": ROOT, "timeout": 120, "pass_fds": (fd,)}
        plain = subprocess.run([sys.executable, str(script)], **common)  # type: ignore[call-overload]
        run = subprocess.run(
            [sys.executable, "-m", "profila", "annotate", "--no-color", "--", str(script)],
            **common,
        )
    finally:
        passed.close()
    want = json.loads(plain.stdout.splitlines()[0])
    got = json.loads(run.stdout.splitlines()[0])
    # listdir's own descriptor is the lowest free one: the same in both runs when the sets agree
    assert fd in want
    assert got == want


# Unbuffered writes of 4 MB to a reader that pauses, while a thread sends the program SIGWINCH
# (default action: ignored) every millisecond. Plainly the kernel discards each signal; a
# traced program would be woken by each on its way to the tracer, and its blocking write would
# end short (measured: 3 of 3 runs cut short while gdb stayed attached under perf).
WINCH = r"""
import os, signal, sys, threading, time
done = threading.Event()
def winch():
    while not done.is_set():
        os.kill(os.getpid(), signal.SIGWINCH)
        time.sleep(0.001)
threading.Thread(target=winch, daemon=True).start()
sys.stdout.buffer.write(b"w" * (4 << 20) + b"\n")
done.set()
"""


def test_ignored_signals_do_not_cut_unbuffered_output_short(tmp_path: Path) -> None:
    """With perf sampling the target is not traced: ignored signals stay ignored, and a large
    unbuffered write to a slow reader arrives whole, as in a plain run."""
    if not shutil.which("gdb"):
        pytest.skip("gdb is not installed")
    script = tmp_path / "winch.py"
    script.write_text(WINCH)
    out = tmp_path / "p.json"
    argv = [sys.executable, "-m", "profila", "annotate", "--no-color", "-o", str(out), "--"]
    proc = subprocess.Popen(
        [*argv, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    received = bytearray()
    while chunk := proc.stdout.read1(65536):  # a slow reader: the pipe fills up again and again
        received += chunk
        time.sleep(0.002)
    err = proc.stderr.read() if proc.stderr is not None else b""
    assert proc.wait(60) == 0, err[-2000:]
    assert received.startswith(b"w" * (4 << 20) + b"\n"), len(received.split(b"\n")[0])
    assert json.loads(out.read_text())["sampler"] == "perf"
