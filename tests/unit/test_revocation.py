"""A rebalance or a stop abandons the work under way (processor/revocation.py): the Fence ends it at once, refuses
new work until the flow resumes, and lets go of what is held; results and errors of work that ends pass through."""

from __future__ import annotations

import asyncio

import pytest

from processor.revocation import Abandoned, Fence


async def test_work_that_ends_gives_its_result_or_its_error():
    fence = Fence()

    async def answer():
        await asyncio.sleep(0)
        return 42

    async def fails():
        await asyncio.sleep(0)
        raise ValueError("bad record")

    assert await fence.run(answer()) == 42
    with pytest.raises(ValueError, match="bad record"):
        await fence.run(fails())
    assert fence.abandoned == 0


async def test_work_under_way_is_cancelled_as_the_flow_stops_and_its_cleanup_runs():
    fence = Fence()
    steps = []

    async def stuck_on_kafka():
        try:
            await asyncio.Event().wait()  # an acknowledgement that never comes
        finally:
            steps.append("cleaned up")

    run = asyncio.ensure_future(fence.run(stuck_on_kafka()))
    await asyncio.sleep(0.01)
    assert not run.done()
    fence.abandon()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(run, 1)
    assert steps == ["cleaned up"] and fence.abandoned == 1


async def test_no_work_starts_while_the_flow_is_stopped_and_work_runs_again_once_it_resumes():
    fence = Fence()
    started = []

    async def work():
        started.append(True)
        return "done"

    fence.abandon()
    with pytest.raises(Abandoned):
        await fence.run(work())
    assert started == []  # never started (and closed, so no "never awaited" warning)
    fence.resume()
    assert await fence.run(work()) == "done"


async def test_each_stop_of_the_flow_abandons_only_what_ran_then():
    fence = Fence()
    fence.abandon()
    fence.resume()
    gate = asyncio.Event()

    async def work():
        await gate.wait()
        return "after the first stop"

    run = asyncio.ensure_future(fence.run(work()))
    await asyncio.sleep(0.01)
    gate.set()
    assert await run == "after the first stop"


async def test_cancelling_the_caller_cancels_the_work():
    fence = Fence()
    cancelled = []

    async def work():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    run = asyncio.ensure_future(fence.run(work()))
    await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0)
    assert cancelled == [True]


async def test_what_is_held_is_let_go_as_the_flow_stops():
    fence = Fence()
    released = []
    fence.on_abandon(lambda: released.append("held records acked"))
    fence.abandon()
    assert released == ["held records acked"] and not fence.flowing


async def test_the_worker_s_consumer_stops_and_resumes_the_fence_with_faust_s_flow(tmp_path):
    from common.config import Config
    from processor.worker import create_app

    app = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path)}))
    fence, consumer = app.pipeline.fence, app.consumer
    resumed = []
    fence.on_resume(lambda: resumed.append(True))
    consumer.stop_flow()  # the first thing Faust does as a rebalance begins
    assert not fence.flowing and not fence.stopping
    consumer.resume_flow()
    assert fence.flowing and resumed == [True]
