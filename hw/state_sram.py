"""State SRAM: the K x V state of every head, banked to feed the MAC array one tile row per cycle.

Bank c (one per array column) holds ``S[h, k, t*C + c]`` at address ``(h*K + k)*NT + t``, with
NT = ceil(V / C) column tiles. One read returns a row segment ``S[h, k, t*C : t*C + C]`` (the B
operand of ``W S`` and ``Q S`` for one step k); one write stores a row segment (a result row of
the state update). Columns beyond V are not stored and read as 0. The host loads an initial state
and reads back the final state through the same two ports, one row segment per beat.
"""

from amaranth import *
from amaranth.lib import data, wiring

from .banks import memory_banks, memory_signature, read_handshake

__all__ = ["StateSram", "sram_layouts"]


def sram_layouts(heads, d_k, d_v, lanes, width):
    """Payload layouts of the read command, the read data and the write port."""
    tiles = -(-d_v // lanes)
    addr = data.StructLayout({"head": range(heads), "row": range(d_k), "tile": range(tiles)})
    row = data.ArrayLayout(signed(width), lanes)
    write = data.StructLayout(
        {"head": range(heads), "row": range(d_k), "tile": range(tiles), "data": row}
    )
    return addr, row, write


def _pow2(n: int) -> bool:
    return n & (n - 1) == 0


class StateSram(wiring.Component):
    """Banked state memory.

    Parameters
    ----------
    heads, d_k, d_v : int
        State shape per head (K x V) and number of heads.
    lanes : int
        Banks: values per read or write (the array's columns).
    width : int
        Signed state word width.

    Members
    -------
    rd_cmd : In(stream.Signature(addr_layout))
        ``head``, ``row`` (k), ``tile`` (column tile t).
    rd_data : Out(stream.Signature(ArrayLayout(signed(width), lanes)))
        The row segment, one beat per command, in order, ``READ_LATENCY`` (hw/banks.py) cycles
        after it.
    wr : In(stream.Signature(write_layout))
        ``head``, ``row``, ``tile`` and ``data``: one row segment written per beat (always ready).
    """

    def __init__(self, heads: int, d_k: int, d_v: int, lanes: int, width: int):
        for name, value in (
            ("heads", heads),
            ("d_k", d_k),
            ("d_v", d_v),
            ("lanes", lanes),
            ("width", width),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        self.heads, self.d_k, self.d_v, self.lanes, self.width = heads, d_k, d_v, lanes, width
        self.tiles = -(-d_v // lanes)
        self.depth = heads * d_k * self.tiles
        self.addr_layout, self.row_layout, self.write_layout = sram_layouts(
            heads, d_k, d_v, lanes, width
        )
        super().__init__(memory_signature(self.addr_layout, self.row_layout, self.write_layout))

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.heads, cfg.d_k, cfg.d_v, cfg.array_cols, cfg.fmt_state.width)

    def address(self, head, row, tile):
        """Word address of a row segment (bit fields when the sizes are powers of two)."""
        if _pow2(self.d_k) and _pow2(self.tiles):
            return Cat(
                tile[: (self.tiles - 1).bit_length()], row[: (self.d_k - 1).bit_length()], head
            )
        return (head * self.d_k + row) * self.tiles + tile

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        banks = memory_banks(m, L, self.width, self.depth)  # words never written read 0
        take, load, cmd = read_handshake(m, self.rd_cmd, self.rd_data)
        rd_addr = self.address(cmd.head, cmd.row, cmd.tile)
        wr = self.wr.payload
        wr_addr = self.address(wr.head, wr.row, wr.tile)
        m.d.comb += self.wr.ready.eq(1)
        for c, (rd, wp) in enumerate(banks):
            m.d.comb += [
                rd.addr.eq(rd_addr),
                rd.en.eq(take),
                wp.addr.eq(wr_addr),
                wp.data.eq(wr.data[c]),
                wp.en.eq(self.wr.valid & (wr.tile * L + c < self.d_v)),
            ]
            with m.If(load):
                m.d.sync += self.rd_data.payload[c].eq(rd.data)
        return m
