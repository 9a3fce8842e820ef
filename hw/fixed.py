"""Hardware forms of the fixed-point steps of ``deltanet_hw.qformat`` (same bits, as logic).

:func:`requantize` is :meth:`QFormat.requantize` as combinational Amaranth: round a signed
integer with ``frac_in`` fractional bits (a constant, or a signal for a variable right shift) into
a format, then saturate or wrap. :func:`shift_round` is the rounding alone.
"""

from amaranth import *

from ..qformat import QFormat

__all__ = ["requantize", "shift_round"]


def shift_round(m: Module, x, shift, rounding: str, width: int, name: str):
    """``x * 2**-shift`` rounded like :func:`deltanet_hw.qformat.shift_round`.

    ``shift`` is an int (any sign) or an unsigned signal (a right shift). Returns a signed
    signal of ``width`` bits (the caller sizes it to hold the result).
    """
    out = Signal(signed(width), name=name)
    x = Value.cast(x).as_signed()
    if isinstance(shift, int):
        if shift <= 0:
            m.d.comb += out.eq(x << -shift)
            return out
        q, r = x >> shift, x[:shift]
        half = 1 << (shift - 1)
        if rounding == "truncate":
            m.d.comb += out.eq(q)
        elif rounding == "half_up":
            m.d.comb += out.eq(q + (r >= half))
        else:
            m.d.comb += out.eq(q + ((r > half) | ((r == half) & q[0])))
        return out
    shift = Value.cast(shift)
    q = Signal(signed(len(x)), name=f"{name}_q")
    m.d.comb += q.eq(x >> shift)
    ones = Signal(len(x), name=f"{name}_mask")
    m.d.comb += ones.eq((Const(1, len(x) + 1) << shift) - 1)
    r = Signal(len(x), name=f"{name}_r")
    half = Signal(len(x), name=f"{name}_half")
    m.d.comb += [r.eq(x.as_unsigned() & ones), half.eq((Const(1, len(x) + 1) << shift) >> 1)]
    nonzero = shift != 0
    if rounding == "truncate":
        m.d.comb += out.eq(q)
    elif rounding == "half_up":
        m.d.comb += out.eq(q + (nonzero & (r >= half)))
    else:
        m.d.comb += out.eq(q + (nonzero & ((r > half) | ((r == half) & q[0]))))
    return out


def requantize(m: Module, x, fmt: QFormat, name: str, *, frac_in=None, shift=None):
    """Round ``x`` into ``fmt``: ``(raw, overflowed)`` signals.

    Give ``frac_in`` (an int: the fractional bits of ``x``), or ``shift`` (an unsigned signal: the
    right shift ``frac_in - fmt.frac_bits`` when it varies). The raw value is ``fmt.width`` bits
    (signed if ``fmt.signed``); ``overflowed`` is 1 when the rounded value did not fit (then it
    saturated, or wrapped if ``fmt.overflow == "wrap"``).
    """
    if (frac_in is None) == (shift is None):
        raise ValueError("give exactly one of frac_in and shift")
    x = Value.cast(x)
    if shift is None:
        shift = frac_in - fmt.frac_bits
    grow = -shift if isinstance(shift, int) and shift < 0 else 0
    rounded = shift_round(m, x, shift, fmt.rounding, len(x) + grow + 1, f"{name}_rounded")
    raw = Signal(signed(fmt.width) if fmt.signed else unsigned(fmt.width), name=name)
    over = Signal(name=f"{name}_overflow")
    lo, hi = fmt.min_raw, fmt.max_raw
    m.d.comb += over.eq((rounded < lo) | (rounded > hi))
    if fmt.overflow == "saturate":
        with m.If(rounded < lo):
            m.d.comb += raw.eq(lo)
        with m.Elif(rounded > hi):
            m.d.comb += raw.eq(hi)
        with m.Else():
            m.d.comb += raw.eq(rounded)
    else:
        m.d.comb += raw.eq(rounded)  # keeps the low bits: two's complement wrap
    return raw, over
