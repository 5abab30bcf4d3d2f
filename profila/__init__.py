"""profila: a sampling profiler for Numba-compiled code."""

__version__ = "0.1.0.dev0"
