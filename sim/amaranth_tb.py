"""Helpers for Amaranth simulator testbenches: bounded stream transfers with random stalls."""

from __future__ import annotations

__all__ = ["StreamTimeout", "stream_get", "stream_put", "write_then_read"]


class StreamTimeout(AssertionError):
    """A handshake did not complete within its cycle budget."""


async def stream_put(ctx, stream, payload, *, idle=0, max_wait=1000, name="stream"):
    """Drive one beat (after ``idle`` idle cycles) and wait for it to be accepted."""
    if idle:
        await ctx.tick().repeat(idle)
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    for _ in range(max_wait):
        _, _, ready = await ctx.tick().sample(stream.ready)
        if ready:
            ctx.set(stream.valid, 0)
            return
    raise StreamTimeout(f"{name}: beat not accepted within {max_wait} cycles")


async def stream_get(ctx, stream, *, stall=0, max_wait=1000, name="stream"):
    """Accept one beat (after ``stall`` cycles of backpressure) and return its payload."""
    if stall:
        ctx.set(stream.ready, 0)
        await ctx.tick().repeat(stall)
    ctx.set(stream.ready, 1)
    for _ in range(max_wait):
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid:
            ctx.set(stream.ready, 0)
            return payload
    raise StreamTimeout(f"{name}: no beat within {max_wait} cycles")


def write_then_read(dut, writes, reads, lanes, rng, stall_p=0.3, words=None):
    """Drive ``writes`` into ``dut.wr``, then ``reads`` into ``dut.rd_cmd``; return the words read
    (``words(beat, lanes)`` of each beat; by default the beat's ``lanes`` elements).

    Random idle cycles on both command streams and random backpressure on ``dut.rd_data``.
    """
    from amaranth.sim import Simulator

    got = []

    def pause():
        return int(rng.integers(1, 3)) if rng.random() < stall_p else 0

    async def commands(ctx):
        for w in writes:
            await stream_put(ctx, dut.wr, w, idle=pause(), name="wr")
        for r in reads:
            await stream_put(ctx, dut.rd_cmd, r, idle=pause(), name="rd_cmd")

    async def results(ctx):
        for _ in reads:
            p = await stream_get(ctx, dut.rd_data, stall=pause(), max_wait=10_000, name="rd_data")
            got.append(words(p, lanes) if words else [int(p[lane]) for lane in range(lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(results)
    sim.run()
    return got
