"""Symbolisation: raw samples of a target -> Numba source frames.

``symboliser.Symboliser`` is the entry point. Underneath, one job per module: ``memory``
(reading the target), ``maps`` (its mappings), ``jit`` (llvmlite's GDB JIT object list),
``jitobject`` (one JIT object: relocation, functions), ``debuginfo`` (lines, inline chains),
``cfi`` (unwind rows), ``unwind`` (stack walking helpers), ``demangle`` (Numba's names) and
``frames`` (the output types).
"""
