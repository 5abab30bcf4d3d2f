"""Record the JIT objects of a live Numba process for the unit tests.

Runs fixture_target.py with NUMBA_DEBUGINFO=1, reads its JIT object list with profila's own
reader (profila.symbols.jit), and writes here:

- ``objNN.o``: the raw ELF images as LLVM registered them (nothing relocated);
- ``facts.json``: versions, the source file, the line of each ``# MARK`` comment, and per
  object its symfile address plus Numba's own view of the user's functions (mangled name,
  qualified name, address), taken inside the target.

Usage: python tests/data/jit/make_fixture.py   (re-run when numba/llvmlite change)
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TARGET = HERE / "fixture_target.py"
MAX_TOTAL = 512 * 1024  # keep the fixture small: beyond this, only objects with user code


def markers(path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for number, text in enumerate(path.read_text().splitlines(), 1):
        m = re.search(r"#\s*([A-Z][A-Z_]+)\s*$", text)
        if m:
            found[m.group(1)] = number
    return found


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from profila.symbols.jit import JitRegistry
    from profila.symbols.maps import MemoryMaps
    from profila.symbols.memory import ProcessMemory

    env = {**os.environ, "NUMBA_DEBUGINFO": "1", "PYTHONHASHSEED": "0"}
    child = subprocess.Popen(
        [sys.executable, str(TARGET)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=str(HERE),
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        numba_facts = json.loads(child.stdout.readline())
        memory = ProcessMemory(child.pid)
        maps = MemoryMaps(child.pid)
        registry = JitRegistry(child.pid, memory, maps)
        entries = registry.poll()
        if not entries:
            print("no JIT objects found", file=sys.stderr)
            return 1
        images = []
        for entry in reversed(entries):  # oldest first
            image = registry.read_object(entry)
            if image is not None:
                images.append((entry, image))
        user = {f["mangled"] for f in numba_facts["functions"]}
        if sum(len(i) for _, i in images) > MAX_TOTAL:
            images = [(e, i) for e, i in images if any(n.encode() in i for n in user)]
        for old in HERE.glob("obj*.o"):
            old.unlink()
        objects = []
        for n, (entry, image) in enumerate(images):
            name = f"obj{n:02d}.o"
            (HERE / name).write_bytes(image)
            objects.append(
                {"file": name, "symfile_address": entry.symfile_address, "size": len(image)}
            )
        import llvmlite
        import numba

        facts = {
            "python": platform.python_version(),
            "numba": numba.__version__,
            "llvmlite": llvmlite.__version__,
            "source": str(TARGET),
            "markers": markers(TARGET),
            "functions": numba_facts["functions"],
            "objects": objects,
        }
        (HERE / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
        total = sum(o["size"] for o in objects)
        print(f"wrote {len(objects)} objects ({total} bytes) and facts.json to {HERE}")
        return 0
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
