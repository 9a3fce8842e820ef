"""Chunk buffer: a banked scratchpad matrix read by rows, by columns, or as a diagonal.

One instance holds one matrix of the chunk (Q, K, V, beta, T, W, U, or partial sums at the
accumulator width) of up to ``rows`` x ``cols`` words. It is skew-banked: element (i, j) lives in
bank (i + j) mod L at address (i // L) * cols + j, so both a column segment (L rows of one column,
the A operand of one array step) and a row segment (L columns of one row, a B operand step or a
transposed A step) hit L different banks and are read in one cycle.

The buffer reads and writes words in bank order: a read returns each bank's word and the
rotation ``rot`` = (i + j) mod L of the access (lane t is bank (t + rot) mod L), and a write
gives bank b's word. The barrel rotation into lane order is the reader's (:func:`in_lane_order`)
and out of it the writer's (:func:`in_bank_order`): a reader that selects among several buffers
(the MAC array's operands, the epilogue's addend) rotates once after its selection, a writer
that writes the same row to several buffers rotates once before them, instead of two rotators
in every buffer (most of a buffer's logic).

Read modes:

``COLUMN``
    lane t = 0 .. L-1 gets element (i + t, j), for any i (each bank computes its own row).
``ROW``
    lane t gets element (i, j + t) (a transposed read when the matrix feeds the A side).
``DIAG``
    like ``COLUMN``, but only lane ``lane`` keeps its word and the others read 0: step k of a
    product with diag(x) (row scaling by a vector stored as a column).

Writes store a row segment (``ROW``) or a column segment (``COLUMN``) per beat. Lanes that fall
outside the matrix (i or j beyond its size) are not written and read as 0.
"""

from amaranth import *
from amaranth.lib import data, enum, wiring

from .banks import memory_banks, memory_signature, read_handshake

__all__ = [
    "ChunkBuffer",
    "ReadMode",
    "bank_rotation",
    "buffer_layouts",
    "first_lane",
    "in_bank_order",
    "in_lane_order",
    "rotate",
    "rotation_shape",
]


class ReadMode(enum.Enum, shape=2):
    COLUMN = 0
    ROW = 1
    DIAG = 2


def buffer_layouts(rows, cols, lanes, width):
    """Payload layouts: read command, read data (``banks``: each bank's word, ``rot``), write
    command (its ``data`` in bank order)."""
    cmd = data.StructLayout(
        {"mode": ReadMode, "i": range(rows), "j": range(cols), "lane": range(lanes)}
    )
    words = data.ArrayLayout(signed(width), lanes)
    row = data.StructLayout({"banks": words, "rot": rotation_shape(lanes)})
    write = data.StructLayout({"mode": ReadMode, "i": range(rows), "j": range(cols), "data": words})
    return cmd, row, write


def rotation_shape(lanes: int):
    """Shape of a rotation among ``lanes`` lanes (at least one bit)."""
    return unsigned(max(1, (lanes - 1).bit_length()))


def bank_rotation(i, j, lanes: int):
    """The rotation of an access at (i, j): (i + j) mod ``lanes`` (lane t is in bank t + rot)."""
    bits = (lanes - 1).bit_length()
    return (i + j)[:bits] if bits else Const(0, 1)


def in_lane_order(m: Module, banks, rot, name: str) -> list:
    """Words read in bank order (``banks``, ``rot``) in lane order: lane t is bank (t + rot)."""
    return rotate(m, [banks[b] for b in range(len(banks))], rot, name)


def first_lane(row):
    """Lane 0 of a read beat (``banks``, ``rot``): bank ``rot``."""
    return row.banks[row.rot]


def in_bank_order(m: Module, words, rot, name: str) -> list:
    """Lane-order ``words`` of a write with rotation ``rot`` in bank order: bank b gets lane
    (b - rot) mod L."""
    bits = (len(words) - 1).bit_length()
    back = (-rot)[:bits] if bits else rot
    return rotate(m, [words[t] for t in range(len(words))], back, name)


def rotate(m: Module, words: list, amount, name: str) -> list:
    """``words`` rotated by ``amount`` (an unsigned signal): output t is word (t + amount) mod n.

    A logarithmic rotator: one 2:1 multiplexer per word and bit of ``amount``.
    """
    n = len(words)
    for k in range(len(Value.cast(amount))):
        step = 1 << k
        if step >= n:
            break
        out = []
        for t in range(n):
            word = Signal.like(words[t], name=f"{name}_rot{k}_{t}")
            m.d.comb += word.eq(Mux(amount[k], words[(t + step) % n], words[t]))
            out.append(word)
        words = out
    return words


class ChunkBuffer(wiring.Component):
    """Skew-banked matrix scratchpad.

    Parameters
    ----------
    rows, cols : int
        Matrix size (rows is rounded up to a multiple of ``lanes`` in storage).
    lanes : int
        Banks, and words per read or write.
    width : int
        Signed word width.

    Members
    -------
    rd_cmd : In(stream.Signature(cmd_layout))
        ``mode``, ``i``, ``j``, ``lane`` (DIAG only).
    rd_data : Out(stream.Signature(row_layout))
        One beat per command, in order, ``READ_LATENCY`` (hw/banks.py) cycles after it:
        ``banks`` (each bank's word, 0 for lanes outside the matrix or the DIAG lane) and
        ``rot`` (lane t is bank (t + rot) mod L: :func:`in_lane_order`).
    wr : In(stream.Signature(write_layout))
        ``mode`` (ROW or COLUMN), ``i``, ``j``, ``data`` in bank order (:func:`in_bank_order`
        with :func:`bank_rotation` of i, j); always ready.
    """

    def __init__(self, rows: int, cols: int, lanes: int, width: int):
        for name, value in (("rows", rows), ("cols", cols), ("lanes", lanes), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two (skewed banks), not {lanes}")
        self.rows, self.cols, self.lanes, self.width = rows, cols, lanes, width
        self.blocks = -(-rows // lanes)
        self.depth = self.blocks * cols
        self.cmd_layout, self.row_layout, self.write_layout = buffer_layouts(
            rows, cols, lanes, width
        )
        super().__init__(memory_signature(self.cmd_layout, self.row_layout, self.write_layout))

    @classmethod
    def from_config(cls, cfg):
        """The buffer of one chunk matrix (C x max(d_k, d_v) data words, one lane per array row)."""
        from .mac_array import operand_widths

        return cls(cfg.chunk_size, max(cfg.d_k, cfg.d_v), cfg.array_rows, operand_widths(cfg)[0])

    def _bank_addresses(self, m, mode, i, j, prefix):
        """Per bank: (address, inside the matrix) for an access at (i, j) in ``mode``, and the
        rotation (i + j) mod L.

        Bank b holds lane t = (b - rot) mod L: element (i + t, j) (COLUMN) or (i, j + t) (ROW).
        The sum of an index and t < L splits into low bits (a function of the index's low bits
        and the rotation) and high bits (the index's high bits, or those plus one, computed once
        for all banks), so a bank costs no adder of its own.
        """
        L = self.lanes
        bits = (L - 1).bit_length()
        rot = Signal(rotation_shape(L), name=f"{prefix}_rot")
        m.d.comb += rot.eq(bank_rotation(i, j, L))
        plus = {}
        for name, index in (("i", i), ("j", j)):
            high = Signal(len(index) - bits + 1, name=f"{prefix}_{name}_high_plus_1")
            m.d.comb += high.eq(index[bits:] + 1)
            plus[name] = high

        def offset(index, name, t, b):  # index + t, from the shared high part
            if not bits:
                return index
            low = Signal(bits + 1, name=f"{prefix}_{name}_low_{b}")
            m.d.comb += low.eq(index[:bits] + t)
            return Cat(low[:bits], Mux(low[bits], plus[name], index[bits:]))

        out = []
        for b in range(L):
            t = (b - rot)[:bits] if bits else Const(0, 1)
            row_i = Signal(range(self.rows + L), name=f"{prefix}_i_{b}")
            col_j = Signal(range(self.cols + L), name=f"{prefix}_j_{b}")
            m.d.comb += [
                row_i.eq(Mux(mode == ReadMode.ROW, i, offset(i, "i", t, b))),
                col_j.eq(Mux(mode == ReadMode.ROW, offset(j, "j", t, b), j)),
            ]
            ok = (row_i < self.rows) & (col_j < self.cols)
            block = row_i[bits:]
            if self.cols & (self.cols - 1) == 0:
                addr = Cat(col_j[: (self.cols - 1).bit_length()], block)
            else:
                addr = block * self.cols + col_j
            out.append((addr, ok, t))
        return rot, out

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        ports = memory_banks(m, L, self.width, self.depth)  # words never written read 0
        take, load, cmd = read_handshake(m, self.rd_cmd, self.rd_data)
        rot, banks = self._bank_addresses(m, cmd.mode, cmd.i, cmd.j, "rd")
        rot_q = Signal.like(rot)
        keep_q = Signal(L)  # banks that read a word inside the matrix (and the DIAG lane)
        with m.If(take):
            m.d.sync += rot_q.eq(rot)
        keep = []
        for (addr, ok, t), (rd, _) in zip(banks, ports, strict=True):
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(take)]
            keep.append(ok & ((cmd.mode != ReadMode.DIAG) | (t == cmd.lane)))
        with m.If(take):
            m.d.sync += keep_q.eq(Cat(*keep))
        with m.If(load):  # the banks' words, masked, and the rotation, registered
            m.d.sync += self.rd_data.payload.rot.eq(rot_q)
            for b, (rd, _) in enumerate(ports):
                m.d.sync += self.rd_data.payload.banks[b].eq(Mux(keep_q[b], rd.data, 0))

        # write: a row or column segment, its words in bank order
        wr = self.wr.payload
        m.d.comb += self.wr.ready.eq(1)
        _, wbanks = self._bank_addresses(m, wr.mode, wr.i, wr.j, "wr")
        for b, ((addr, ok, _), (_, wp)) in enumerate(zip(wbanks, ports, strict=True)):
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(wr.data[b]), wp.en.eq(self.wr.valid & ok)]
        return m
