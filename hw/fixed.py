"""Hardware forms of the fixed-point steps of ``deltanet_hw.qformat`` (same bits, as logic).

:func:`requantize` is :meth:`QFormat.requantize` as combinational Amaranth: round a signed
integer with ``frac_in`` fractional bits (or by a variable right shift) into a format, then
saturate or wrap. It is built from :func:`round_bounds` (the floor's low bits, the round-up bit
from the guard bit and a sticky OR, and the range flags) and :func:`bound` (the carry and the
saturation), so a pipeline can register between the two.
"""

from amaranth import *

from ..qformat import QFormat

__all__ = [
    "bound",
    "range_flags",
    "requantize",
    "round_bounds",
    "round_finish",
    "round_parts",
    "shift_round",
]


def round_parts(m: Module, x, shift, rounding: str, name: str):
    """``(q, up)``: ``x >> shift`` (floor) and the bit that rounding adds to it.

    ``shift`` is an int > 0 or an unsigned signal (0 means no rounding). ``half_up`` adds the
    guard bit (the first dropped bit); ``half_even`` adds it when a lower dropped bit is set or
    ``q`` is odd; ``truncate`` adds nothing.
    """
    x = Value.cast(x).as_signed()
    q = Signal(signed(len(x)), name=f"{name}_q")
    up = Signal(name=f"{name}_up")
    if isinstance(shift, int):
        m.d.comb += q.eq(x >> shift)
        guard = x[shift - 1]
        sticky = x[: shift - 1].any() if shift > 1 else C(0, 1)
        nonzero = C(1, 1)
    else:
        shift = Value.cast(shift)
        m.d.comb += q.eq(x >> shift)
        g = Signal.like(shift, name=f"{name}_guard_at")  # position of the guard bit
        m.d.comb += g.eq(Mux(shift == 0, 0, shift - 1))
        below = Signal(len(x), name=f"{name}_below")  # ones below the guard bit
        m.d.comb += below.eq(~(Const(-1, len(x)) << g))
        guard = x.as_unsigned().bit_select(g, 1)
        sticky = (x.as_unsigned() & below).any()
        nonzero = shift != 0
    if rounding == "truncate":
        m.d.comb += up.eq(0)
    elif rounding == "half_up":
        m.d.comb += up.eq(nonzero & guard)
    else:
        m.d.comb += up.eq(nonzero & guard & (sticky | q[0]))
    return q, up


def shift_round(m: Module, x, shift, rounding: str, width: int, name: str):
    """``x * 2**-shift`` rounded like :func:`deltanet_hw.qformat.shift_round`.

    ``shift`` is an int (any sign) or an unsigned signal (a right shift). Returns a signed
    signal of ``width`` bits (the caller sizes it to hold the result).
    """
    out = Signal(signed(width), name=name)
    x = Value.cast(x).as_signed()
    if isinstance(shift, int) and shift <= 0:
        m.d.comb += out.eq(x << -shift)
        return out
    q, up = round_parts(m, x, shift, rounding, name)
    m.d.comb += out.eq(q + up)
    return out


def round_bounds(m: Module, x, fmt: QFormat, name: str, *, frac_in=None, shift=None):
    """First half of :func:`requantize`: ``(low, up, above, below)``.

    ``low`` is the ``fmt.width`` low bits of ``x`` shifted to ``fmt`` (floor), ``up`` the bit
    rounding adds to it, ``above``/``below`` whether the rounded value is above/below the
    format's range (decided from the floor and ``up``, with no carry chain). A pipeline registers
    these four, then :func:`bound` adds ``up`` to ``low`` in ``fmt.width`` bits and saturates.
    """
    if (frac_in is None) == (shift is None):
        raise ValueError("give exactly one of frac_in and shift")
    x = Value.cast(x).as_signed()
    if shift is None:
        shift = frac_in - fmt.frac_bits
    if isinstance(shift, int) and shift <= 0:
        q, up = x << -shift, C(0, 1)
    else:
        q, up = round_parts(m, x, shift, fmt.rounding, name)
    return range_flags(m, q, up, fmt, name)


def range_flags(m: Module, q, up, fmt: QFormat, name: str):
    """:func:`round_bounds` from :func:`round_parts`' ``(q, up)`` (registered or not): ``(low,
    up, above, below)``."""
    # the range is [-2^b, 2^b) (signed, b = width - 1) or [0, 2^b) (b = width): every test is a
    # reduction over bit fields of q (sign-extended to at least b + 2 bits), no comparator
    b = fmt.width - 1 if fmt.signed else fmt.width
    q = Value.cast(q).as_signed()
    qx = Signal(signed(max(len(q), b + 2)), name=f"{name}_q")
    m.d.comb += qx.eq(q)
    sign, ones = qx[-1], qx[:b].all()
    over_hi = ~sign & qx[b:].any()  # q > hi = 2^b - 1
    at_hi = ~qx[b:].any() & ones  # q == hi
    if fmt.signed:
        under_lo = sign & ~qx[b:].all()  # q < lo = -2^b
        at_lo_minus_1 = qx[b + 1 :].all() & ~qx[b] & ones  # q == -2^b - 1
    else:
        under_lo = sign  # q < 0
        at_lo_minus_1 = qx.all()  # q == -1
    low = Signal(fmt.width, name=f"{name}_low")
    above = Signal(name=f"{name}_above")
    below = Signal(name=f"{name}_below")
    m.d.comb += [
        low.eq(q),
        above.eq(over_hi | (at_hi & up)),  # q + up > hi
        below.eq(under_lo & ~(at_lo_minus_1 & up)),  # q + up < lo
    ]
    return low, up, above, below


def bound(m: Module, value, above, below, fmt: QFormat, name: str):
    """Second half of :func:`requantize`: ``(raw, overflowed)`` from ``value`` (``low + up`` of
    :func:`round_bounds`, in ``fmt.width`` bits: exact whenever the result is in range) and the
    range flags: saturate (or wrap)."""
    raw = Signal(signed(fmt.width) if fmt.signed else unsigned(fmt.width), name=name)
    over = Signal(name=f"{name}_overflow")
    m.d.comb += over.eq(above | below)
    if fmt.overflow == "saturate":
        m.d.comb += raw.eq(Mux(above, fmt.max_raw, Mux(below, fmt.min_raw, value)))
    else:
        m.d.comb += raw.eq(value)  # keeps the low bits: two's complement wrap
    return raw, over


def round_finish(m: Module, low, up, above, below, fmt: QFormat, name: str):
    """:func:`bound` after :func:`round_bounds` (its four values, registered or not): ``low +
    up`` in ``fmt.width`` bits, then saturate. ``(raw, overflowed)``."""
    value = Signal(fmt.width, name=f"{name}_value")
    m.d.comb += value.eq(low + up)
    return bound(m, value, above, below, fmt, name)


def requantize(m: Module, x, fmt: QFormat, name: str, *, frac_in=None, shift=None):
    """Round ``x`` into ``fmt``: ``(raw, overflowed)`` signals.

    Give ``frac_in`` (an int: the fractional bits of ``x``), or ``shift`` (an unsigned signal: the
    right shift ``frac_in - fmt.frac_bits`` when it varies). The raw value is ``fmt.width`` bits
    (signed if ``fmt.signed``); ``overflowed`` is 1 when the rounded value did not fit (then it
    saturated, or wrapped if ``fmt.overflow == "wrap"``). :func:`round_bounds` then
    :func:`round_finish`, with no register between.
    """
    return round_finish(m, *round_bounds(m, x, fmt, name, frac_in=frac_in, shift=shift), fmt, name)
