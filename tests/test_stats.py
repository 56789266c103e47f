"""The generator's latency recording: the numpy fill equals hdrh's own recording."""

from __future__ import annotations

import random
from array import array

from hdrh.histogram import HdrHistogram

from loadgen.stats import (
    HIGHEST_US,
    IntervalRecorder,
    histogram_of,
    new_histogram,
    p99_ms,
    values_at_percentiles,
)


def _recorded_one_by_one(values: list[int]) -> HdrHistogram:
    histogram = new_histogram()
    for value in values:
        histogram.record_value(min(max(value, 1), HIGHEST_US))
    return histogram


def test_histogram_of_matches_record_value() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 2)) for _ in range(50_000)]
    values += [0, -5, 1, 2, 1023, 1024, 2047, 2048, 123_456_789, HIGHEST_US, HIGHEST_US + 9]
    ours = histogram_of(array("q", values))
    theirs = _recorded_one_by_one(values)
    assert list(ours.counts) == list(theirs.counts)
    assert ours.get_total_count() == theirs.get_total_count() == len(values)
    assert ours.get_min_value() == theirs.get_min_value()
    assert ours.get_max_value() == theirs.get_max_value()
    for p in (50, 90, 99, 99.9, 100):
        assert ours.get_value_at_percentile(p) == theirs.get_value_at_percentile(p)
    # and it survives the wire format the workers send it in
    decoded = new_histogram()
    decoded.decode_and_add(ours.encode())
    assert decoded.get_value_at_percentile(99) == ours.get_value_at_percentile(99)


def test_interval_recorder_rotates_to_empty() -> None:
    recorder = IntervalRecorder()
    for value in (5, 5, 900):
        recorder.record(value)
    first = recorder.rotate()
    assert first.get_total_count() == 3
    assert first.get_value_at_percentile(50) == 5
    assert recorder.rotate().get_total_count() == 0


def test_values_at_percentiles_match_hdrh() -> None:
    rng = random.Random(11)
    for size in (1, 2, 7, 1000, 40_000):
        histogram = histogram_of(
            array("q", [int(rng.paretovariate(1.2) * 900) for _ in range(size)])
        )
        wanted = (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.999, 100.0)
        expected = [histogram.get_value_at_percentile(p) for p in wanted]
        assert values_at_percentiles(histogram, wanted) == expected
    assert values_at_percentiles(new_histogram(), (50.0,)) == [0]
    assert p99_ms(new_histogram()) is None
