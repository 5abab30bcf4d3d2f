from hypothesis import given
from hypothesis import strategies as st

from profila.aggregate import Aggregator
from profila.model import Profile
from profila.symbols.frames import Sample, SampleKind, SourceFrame

USER = SourceFrame("/src/dither.py", 17, "dither")
LIB = SourceFrame("/lib/numba/np/arraymath.py", 120, "round_impl")


def profile_of(samples: list[Sample], idle_ns: int = 0) -> Profile:
    agg = Aggregator(rate_hz=100)
    for s in samples:
        agg.add(s)
    if idle_ns:
        agg.add_idle(1, idle_ns)
    return agg.profile(
        command=["x.py"], duration_s=1.0, exit_code=0, debuginfo="full", sampler="perf"
    )


def test_innermost_frame_is_self_and_every_frame_counts_in_total() -> None:
    """A sample inside inlined library code is self time of the library line and total time of
    the user line that called it."""
    p = profile_of([Sample(1, SampleKind.NUMBA, (LIB, USER), 0x1000)])
    lines = {(x.file, x.line): x for x in p.lines}
    assert (lines[(LIB.file, 120)].self, lines[(LIB.file, 120)].total) == (1, 1)
    assert (lines[(USER.file, 17)].self, lines[(USER.file, 17)].total) == (0, 1)


def test_a_line_twice_on_one_stack_counts_once_in_total() -> None:
    """Recursion must not push a line's total above the number of samples."""
    p = profile_of([Sample(1, SampleKind.NUMBA, (USER, USER, USER))])
    (line,) = p.lines
    assert (line.self, line.total) == (1, 1)
    (function,) = p.functions
    assert (function.self, function.total) == (1, 1)


def test_idle_time_becomes_idle_ticks_at_the_sampling_rate() -> None:
    """250 ms blocked at 100 Hz is 25 idle ticks, counted in the total."""
    p = profile_of([Sample(1, SampleKind.PYTHON)], idle_ns=250_000_000)
    assert p.samples["idle"] == 25
    assert p.samples["total"] == 26


kinds = st.sampled_from(list(SampleKind))
frames = st.lists(st.sampled_from([USER, LIB, SourceFrame("/src/h.py", 3, "helper")]), max_size=4)


@given(st.lists(st.tuples(kinds, frames), max_size=50))
def test_counts_are_consistent(raw: list[tuple[SampleKind, list[SourceFrame]]]) -> None:
    """Classes add up to the total, self never exceeds total, and no total exceeds the number of
    Numba samples."""
    samples = [Sample(1, k, tuple(f) if k is SampleKind.NUMBA else ()) for k, f in raw]
    p = profile_of(samples)
    assert p.samples["total"] == len(samples)
    numba = p.samples["numba"]
    assert sum(x.self for x in p.lines) <= numba
    for x in [*p.lines, *p.functions]:
        assert 0 <= x.self <= x.total <= numba


def test_kernel_time_becomes_kernel_ticks() -> None:
    """System time the perf sampler cannot see is counted, not lost: 0.5 s at 100 Hz is 50."""
    agg = Aggregator(rate_hz=100)
    agg.add(Sample(1, SampleKind.PYTHON))
    agg.add_kernel_time(0.5)
    p = agg.profile(command=[], duration_s=1.0, exit_code=0, debuginfo="lines", sampler="perf")
    assert p.samples["kernel"] == 50 and p.samples["total"] == 51
