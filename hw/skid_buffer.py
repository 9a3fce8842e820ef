"""Skid buffer: one register stage on a valid/ready stream with its ready registered too.

Between two blocks placed apart (the core's token framer and BetaPhi), it ends every path from
one at a flip-flop: the sender's valid and payload, and the receiver's ready, each meet a
register here, not the other block's logic. Full throughput (one word per cycle while the
receiver takes them), one cycle of latency, words in order, none dropped: when the receiver
stalls, the word the sender gave in that cycle (``i.ready`` was already high) waits in the skid
register, and ``i.ready`` falls until it has moved on.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A registered stage on a stream of ``layout`` payloads.

    Members
    -------
    i : In(stream.Signature(layout))
        ``ready`` is a flip-flop's output (high unless the skid register holds a word).
    o : Out(stream.Signature(layout))
        ``valid`` and ``payload`` are flip-flops' outputs.
    """

    def __init__(self, layout):
        self.layout = layout
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        out_valid = Signal()
        out_word = Signal(self.layout)
        skid_valid = Signal()
        skid_word = Signal(self.layout)
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            self.o.valid.eq(out_valid),
            self.o.payload.eq(out_word),
        ]
        with m.If(~out_valid | self.o.ready):  # the output register is free this cycle
            with m.If(skid_valid):  # (i.ready is low: nothing arrives)
                m.d.sync += [out_valid.eq(1), out_word.eq(skid_word), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out_valid.eq(self.i.valid), out_word.eq(self.i.payload)]
        with m.Elif(self.i.valid & ~skid_valid):  # the output waits: the new word skids
            m.d.sync += [skid_valid.eq(1), skid_word.eq(self.i.payload)]
        return m
