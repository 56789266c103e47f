"""The open-loop send schedule (sans-I/O: time is passed in)."""

from __future__ import annotations

from loadgen.schedule import Schedule

MS = 1_000_000


def test_entries_come_due_at_the_first_tick_at_or_after_their_time() -> None:
    schedule: Schedule[str] = Schedule(tick_ns=MS)
    schedule.add(5 * MS, "on the tick")
    schedule.add(5 * MS + 1, "just after")
    schedule.add(3 * MS + 500_000, "between ticks")
    assert len(schedule) == 3
    assert schedule.next_ns() == 4 * MS
    assert list(schedule.due(4 * MS - 1)) == []
    assert list(schedule.due(4 * MS)) == [(3 * MS + 500_000, "between ticks")]
    assert schedule.next_ns() == 5 * MS
    assert list(schedule.due(5 * MS)) == [(5 * MS, "on the tick")]
    assert list(schedule.due(6 * MS)) == [(5 * MS + 1, "just after")]
    assert len(schedule) == 0
    assert schedule.next_ns() is None


def test_nothing_is_ever_taken_before_its_time() -> None:
    schedule: Schedule[int] = Schedule(tick_ns=MS)
    for n in range(1000):
        schedule.add(n * 37_003, n)
    now = 0
    taken = 0
    while len(schedule):
        now += 250_000
        for intended, _ in schedule.due(now):
            assert intended <= now
            taken += 1
    assert taken == 1000


def test_a_sender_catching_up_takes_what_it_adds_that_is_already_due() -> None:
    """After a stall the open loop sends every send it owed, each keeping its own time."""
    schedule: Schedule[str] = Schedule(tick_ns=MS)
    schedule.add(0, "c")
    sent = []
    for intended, item in schedule.due(200 * MS):  # woke 200 ms late, period 50 ms
        sent.append(intended)
        schedule.add(intended + 50 * MS, item)
    assert sent == [0, 50 * MS, 100 * MS, 150 * MS, 200 * MS]
    assert schedule.next_ns() == 250 * MS
