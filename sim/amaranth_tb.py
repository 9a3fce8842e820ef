"""Helpers for Amaranth simulator testbenches: bounded stream transfers with random stalls."""

from __future__ import annotations

__all__ = ["StreamTimeout", "stream_get", "stream_put"]


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
