"""The in-process pieces behind fair polling (issue 10, item 7): the read share of each turn of
the event loop, and the lock-free in-memory rate-limit windows."""

from __future__ import annotations

import asyncio

from stillmotion.accounts.limits import MemoryWindows, TurnShare


def test_reads_beyond_the_share_wait_for_later_turns_in_order():
    share = TurnShare(per_turn=4)
    started: list[tuple[int, int]] = []  # (turn, reader)
    turn = 0

    async def reader(n: int) -> None:
        await share.admit()
        started.append((turn, n))

    async def main() -> None:
        nonlocal turn
        tasks = [asyncio.ensure_future(reader(n)) for n in range(10)]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0)  # one turn of the loop
            turn += 1
        # A new crowd after a quiet turn starts at once again.
        await asyncio.sleep(0)
        await asyncio.gather(*(reader(n) for n in range(10, 13)))

    asyncio.run(main())
    assert [n for _, n in started] == list(range(13))  # everyone, in arrival order
    per_turn: dict[int, int] = {}
    for t, _ in started[:10]:
        per_turn[t] = per_turn.get(t, 0) + 1
    assert max(per_turn.values()) <= 4
    assert len(per_turn) >= 3  # 10 readers, 4 a turn


def test_a_cancelled_waiter_gives_its_place_to_the_next():
    share = TurnShare(per_turn=1)
    started: list[int] = []

    async def reader(n: int) -> None:
        await share.admit()
        started.append(n)

    async def main() -> None:
        tasks = [asyncio.ensure_future(reader(n)) for n in range(3)]
        await asyncio.sleep(0)  # 0 started; 1 and 2 wait
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert started == [0, 2]


def test_the_share_survives_a_new_event_loop():
    share = TurnShare(per_turn=1)

    async def crowd() -> None:
        await asyncio.gather(*(share.admit() for _ in range(3)))

    asyncio.run(crowd())
    asyncio.run(crowd())  # a second loop (as each test app gets) is not stuck on the first


def test_the_moving_window_is_exact_and_says_when_a_slot_frees():
    windows = MemoryWindows(window=60)
    assert windows.hit_moving("a", 3, 100.0) == (True, 2, 160.0)
    assert windows.hit_moving("a", 3, 110.0) == (True, 1, 160.0)
    assert windows.hit_moving("a", 3, 120.0) == (True, 0, 160.0)
    assert windows.hit_moving("a", 3, 159.0) == (False, 0, 160.0)  # refused: not counted
    assert windows.peek_moving("a", 3, 159.0) == (0, 160.0)
    assert windows.hit_moving("a", 3, 160.5) == (True, 0, 170.0)  # the first left
    assert windows.hit_moving("b", 3, 160.5) == (True, 2, 220.5)  # keys are apart
    assert windows.peek_moving("c", 3, 160.5) == (3, 160.5)


def test_the_read_counter_weights_the_last_window():
    windows = MemoryWindows(window=60)
    for _ in range(10):
        assert windows.hit_counter("k", 10, 60.0)[0]
    allowed, remaining, _ = windows.hit_counter("k", 10, 61.0)
    assert not allowed and remaining == 0
    # A third into the next window, the last one's 10 weigh 6.67: 4 more fit.
    for _ in range(4):
        assert windows.hit_counter("k", 10, 140.0)[0]
    allowed, remaining, reset = windows.hit_counter("k", 10, 140.0)
    assert not allowed and remaining == 0 and 140.0 < reset <= 180.0
    # Two windows later nothing is left.
    assert windows.hit_counter("k", 10, 250.0) == (True, 9, 300.0)


def test_quiet_keys_are_forgotten():
    windows = MemoryWindows(window=60)
    windows.hit_moving("old", 5, 0.0)
    windows.hit_counter("old-read", 5, 0.0)
    windows.hit_moving("new", 5, 200.0)  # the sweep runs at most once a minute
    assert "old" not in windows._moving and "old-read" not in windows._counters
