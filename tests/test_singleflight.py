"""tiles.singleflight: concurrent callers share one computation; the last one leaving cancels it."""

from __future__ import annotations

import asyncio

import pytest

from tiles.singleflight import SingleFlight


def test_concurrent_callers_share_one_computation() -> None:
    async def scenario() -> tuple[list[int], int]:
        flights: SingleFlight[int] = SingleFlight()
        started = 0

        async def work() -> int:
            nonlocal started
            started += 1
            await asyncio.sleep(0.05)
            return 7

        results = await asyncio.gather(*(flights.do("k", work) for _ in range(5)))
        assert len(flights) == 0  # forgotten once done
        return results, started

    results, started = asyncio.run(scenario())
    assert results == [7] * 5 and started == 1


def test_one_caller_leaving_does_not_cancel_the_others() -> None:
    async def scenario() -> int:
        flights: SingleFlight[int] = SingleFlight()

        async def work() -> int:
            await asyncio.sleep(0.1)
            return 3

        leaving = asyncio.create_task(flights.do("k", work))
        staying = asyncio.create_task(flights.do("k", work))
        await asyncio.sleep(0.02)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    assert asyncio.run(scenario()) == 3


def test_a_caller_arriving_while_a_cancelled_computation_unwinds_gets_a_fresh_one() -> None:
    """The race behind a tile stuck in the browser: a client left, its render was cancelled, and while the render's
    cleanup still awaited (releasing its Redis lock) the same tile was asked for again; the newcomer joined the
    dying flight and got CancelledError (a 500) instead of the tile."""

    async def scenario() -> tuple[int, int, bool]:
        flights: SingleFlight[int] = SingleFlight()
        started = 0
        unwinding = asyncio.Event()

        async def work() -> int:
            nonlocal started
            started += 1
            try:
                await asyncio.sleep(0.1)
                return 11
            finally:
                unwinding.set()
                await asyncio.sleep(0.1)  # cleanup that awaits, as releasing a lock does

        first = asyncio.create_task(flights.do("k", work))
        await asyncio.sleep(0.02)
        first.cancel()  # its only caller went away: the computation is cancelled
        await unwinding.wait()
        result = await flights.do("k", work)  # asked again while the cancelled one is still unwinding
        return result, started, first.cancelled()

    result, started, first_cancelled = asyncio.run(scenario())
    assert (result, started, first_cancelled) == (11, 2, True)


def test_the_last_caller_leaving_cancels_the_computation() -> None:
    async def scenario() -> bool:
        flights: SingleFlight[int] = SingleFlight()
        cancelled = asyncio.Event()

        async def work() -> int:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return 0

        callers = [asyncio.create_task(flights.do("k", work)) for _ in range(2)]
        await asyncio.sleep(0.01)
        for caller in callers:
            caller.cancel()
        await asyncio.wait_for(cancelled.wait(), 1)
        return "k" in flights

    assert asyncio.run(scenario()) is False
