"""Pieces shared by the banked memories (state SRAM, chunk buffers)."""

from amaranth import *
from amaranth.lib import memory, stream
from amaranth.lib.wiring import In, Out

__all__ = ["memory_banks", "memory_signature", "read_handshake"]


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


def read_handshake(m: Module, cmd, out) -> Signal:
    """Valid/ready for a one-cycle synchronous read from command stream ``cmd`` to ``out``.

    Returns ``take``: a command is accepted this cycle (enable the read ports with it; their data
    holds until the next ``take``, so ``out`` stays stable while it waits for ready).
    """
    out_valid = Signal()
    take = Signal()
    m.d.comb += [
        take.eq(cmd.valid & (~out_valid | out.ready)),
        cmd.ready.eq(take),
        out.valid.eq(out_valid),
    ]
    with m.If(take):
        m.d.sync += out_valid.eq(1)
    with m.Elif(out.ready):
        m.d.sync += out_valid.eq(0)
    return take
