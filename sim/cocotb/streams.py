"""cocotb stream driver and monitor for Amaranth ``lib.stream`` ports (valid/ready/payload).

Payloads are packed and unpacked with the same ``data.Layout`` the hardware uses. Random idle
cycles (driver) and backpressure (monitor) come from a seeded generator, and every wait is
bounded so that a stuck handshake fails instead of hanging.
"""

from __future__ import annotations

from cocotb.triggers import First, RisingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["StreamDriver", "StreamMonitor", "check_reads", "reset", "write_then_read"]


async def reset(dut, cycles=4):
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class _Port:
    def __init__(self, dut, name, layout, rng, stall_p, max_wait):
        self.dut, self.name, self.layout = dut, name, layout
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.rng, self.stall_p, self.max_wait = rng, stall_p, max_wait
        self.period_ns = 10  # the testbenches' clock
        self.first_time = self.last_time = None  # of the handshakes (ns)

    def _pause(self) -> int:
        return int(self.rng.integers(1, 5)) if self.rng.random() < self.stall_p else 0

    async def _handshake(self, other, what):
        """Wait for the clock edge where ``other`` (the far side's valid or ready) is high.

        Long waits sleep on ``other``'s rising edge instead of on every clock (the core computes
        for thousands of cycles between bursts); ``last_time`` is the handshake's time in ns.
        """
        clk = self.dut.clk
        start = get_sim_time("ns")
        while True:
            await RisingEdge(clk)
            if int(other.value):
                break
            waited = get_sim_time("ns") - start
            if waited > self.max_wait * self.period_ns:
                raise AssertionError(f"{self.name}: {what} in {self.max_wait} cycles")
            # sleep until the far side raises its signal, then take the next clock edge
            await First(RisingEdge(other), Timer(self.max_wait * self.period_ns, "ns"))
            if not int(other.value):
                continue
        self.last_time = get_sim_time("ns")
        if self.first_time is None:
            self.first_time = self.last_time


class StreamDriver(_Port):
    """Drives beats into an input stream, with random idle cycles between them."""

    def __init__(self, dut, name, layout, rng, stall_p=0.0, max_wait=10_000):
        super().__init__(dut, name, layout, rng, stall_p, max_wait)
        self.valid.value = 0

    async def send(self, beats, *, packed=False):
        """Send ``beats`` (payload dicts, or with ``packed`` the payload bits as ints)."""
        for beat in beats:
            for _ in range(self._pause()):
                self.valid.value = 0
                await RisingEdge(self.dut.clk)
            self.payload.value = beat if packed else self.layout.const(beat).as_bits()
            self.valid.value = 1
            await self._handshake(self.ready, "beat not accepted")
        self.valid.value = 0


class StreamMonitor(_Port):
    """Receives beats from an output stream, with random backpressure."""

    def __init__(self, dut, name, layout, rng, stall_p=0.0, max_wait=10_000):
        super().__init__(dut, name, layout, rng, stall_p, max_wait)
        self.ready.value = 0

    async def recv(self, count, *, raw=False):
        """Receive ``count`` beats (layout views, or with ``raw`` the payload bits as ints)."""
        beats = []
        for _ in range(count):
            for _ in range(self._pause()):
                self.ready.value = 0
                await RisingEdge(self.dut.clk)
            self.ready.value = 1
            await self._handshake(self.valid, "no beat")
            bits = int(self.payload.value)
            beats.append(bits if raw else self.layout.from_bits(bits))
        self.ready.value = 0
        return beats


async def write_then_read(dut, layouts, writes, reads, rng, stall_p):
    """Start the clock, reset, write ``writes`` to ``wr``, then read ``reads`` via ``rd_cmd``.

    ``layouts`` is (command, read data, write) as the memory blocks define them.
    """
    import cocotb
    from cocotb.clock import Clock

    cmd_layout, row_layout, write_layout = layouts
    Clock(dut.clk, 10, unit="ns").start()
    wr = StreamDriver(dut, "wr", write_layout, rng, stall_p)
    cmd = StreamDriver(dut, "rd_cmd", cmd_layout, rng, stall_p)
    out = StreamMonitor(dut, "rd_data", row_layout, rng, stall_p)
    await reset(dut)
    await wr.send(writes)
    cocotb.start_soon(cmd.send(reads))
    return await out.recv(len(reads))


def check_reads(dut, label, got, expected, reads):
    """Log every mismatching word (label, read number, address, lane, expected, got); count them."""
    bad = 0
    for n, (beat, want, addr) in enumerate(zip(got, expected, reads, strict=True)):
        for lane, e in enumerate(want):
            if int(beat[lane]) != int(e):
                bad += 1
                dut._log.error(
                    f"{label}: read {n} at {addr} lane {lane}: expected {int(e)}, "
                    f"got {int(beat[lane])}"
                )
    return bad
