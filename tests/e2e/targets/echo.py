"""Target for passthrough tests: reports what it was given, then ends as asked.

argv[1] says how to end: "exit:N", "raise", "signal:N"; the rest is echoed.
"""

import json
import os
import sys

data = sys.stdin.buffer.read()
report = {
    "argv": sys.argv,
    "stdin": data.hex(),
    "cwd": os.getcwd(),
    "numba_debuginfo": os.environ.get("NUMBA_DEBUGINFO"),
}
sys.stdout.write(json.dumps(report) + "\n")
sys.stdout.flush()
sys.stderr.write("to stderr\n")
sys.stderr.flush()
how = sys.argv[1] if len(sys.argv) > 1 else "exit:0"
if how.startswith("exit:"):
    sys.exit(int(how[5:]))
if how == "raise":
    raise RuntimeError("target failed on purpose")
if how.startswith("signal:"):
    os.kill(os.getpid(), int(how[7:]))
