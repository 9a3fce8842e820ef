"""Pieces shared by the banked memories (state SRAM, chunk buffers)."""

from amaranth import *
from amaranth.lib import memory, stream
from amaranth.lib.wiring import In, Out

__all__ = ["READ_LATENCY", "delay_line", "memory_banks", "memory_signature", "read_handshake"]

READ_LATENCY = 3  # command taken -> data on the read stream (command register, block RAM,
# then a register)


def memory_signature(cmd_layout, row_layout, write_layout) -> dict:
    """Ports of a banked memory: ``rd_cmd`` in, ``rd_data`` out, ``wr`` in."""
    return {
        "rd_cmd": In(stream.Signature(cmd_layout)),
        "rd_data": Out(stream.Signature(row_layout)),
        "wr": In(stream.Signature(write_layout)),
    }


def memory_banks(m: Module, count: int, width: int, depth: int):
    """``count`` memories of signed ``width``-bit words (zero at reset): (read, write) ports."""
    ports = []
    for b in range(count):
        mem = memory.Memory(shape=signed(width), depth=depth, init=[])
        m.submodules[f"bank_{b}"] = mem
        ports.append((mem.read_port(domain="sync"), mem.write_port()))
    return ports


def read_handshake(m: Module, cmd, out):
    """Valid/ready for a :data:`READ_LATENCY`-cycle read from command stream ``cmd`` to ``out``.

    Three stages: the command, registered (so the reader's issue decision ends at a flip-flop
    beside the memory instead of running on through the address logic into every bank's read
    enable), the block RAM's output (its data holds until the next read), then a register the
    caller loads with what it makes of that data (masks), so the block RAM's clock-to-output and
    that logic do not share a cycle with the reader's. Full throughput: with ``out.ready`` high,
    one command per cycle.

    Returns ``take`` (the registered command goes to the memory this cycle: enable the read
    ports with it), ``load`` (load ``out.payload`` from the read data this cycle) and the
    registered command's payload (address the read ports from it). ``load`` is high whenever
    the output register is free (empty, or its word taken this cycle), whether or not a read is
    waiting: what it loads without one is never valid, and with ``out.ready`` tied high (as
    every reader in the core does) it is a constant, so the register needs no clock enable to
    fan out; so is ``cmd.ready``, which takes the payload into the command register. ``out``
    holds while it waits for ready. Anything else that belongs to a read (a tag) is registered
    on ``take`` and loaded into ``out`` on ``load``.
    """
    cmd_valid = Signal()  # the command register holds a command not yet sent to the memory
    cmd_q = Signal.like(cmd.payload)
    read_valid = Signal()  # the block RAM's output holds a read not yet in ``out``
    out_valid = Signal()
    take = Signal()
    load = Signal()
    m.d.comb += [
        load.eq(~out_valid | out.ready),
        take.eq(cmd_valid & (~read_valid | load)),
        cmd.ready.eq(~cmd_valid | take),
        out.valid.eq(out_valid),
    ]
    with m.If(cmd.ready):
        m.d.sync += [cmd_valid.eq(cmd.valid), cmd_q.eq(cmd.payload)]
    with m.If(take):
        m.d.sync += read_valid.eq(1)
    with m.Elif(load):
        m.d.sync += read_valid.eq(0)
    with m.If(load):
        m.d.sync += out_valid.eq(read_valid)
    return take, load, cmd_q


def delay_line(m: Module, value, cycles: int, name: str) -> list:
    """``value`` and its copies registered 1 .. ``cycles`` cycles later (a reader's own record of
    what it issued, kept beside the ``READ_LATENCY``-cycle read): ``[value, d1, ..., d_cycles]``."""
    stages = [value]
    for n in range(cycles):
        reg = Signal.like(value, name=f"{name}_{n}")
        m.d.sync += reg.eq(stages[-1])
        stages.append(reg)
    return stages
