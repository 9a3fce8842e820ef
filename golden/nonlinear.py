"""Fixed-point nonlinear functions of the beta/phi pipeline, defined bit for bit.

Every function works on raw int64 words with a known number of fractional bits and uses only
what maps well onto an FPGA: a table of ``2**lut_bits`` segments with linear interpolation
(one block RAM and one multiplier), shifts, leading-zero normalisation and a fixed number of
Newton steps. The hardware implements exactly these steps.

- :func:`sigmoid`: table of sigmoid on [0, 16), symmetry for negative inputs.
- :func:`silu`: x * sigmoid(x).
- :func:`exp_neg`: exp(x) for x <= 0 as 2**-(n + f): table of 2**-f on [0, 1), shift by n.
- :func:`rsqrt`: 1 / sqrt(s) as a mantissa and a power of two: normalise s to m in [1, 4),
  table of m**-0.5, then ``rsqrt_newton`` Newton steps.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..qformat import QFormat, shift_round

__all__ = [
    "INTERNAL_FRAC",
    "Lut",
    "exp_neg",
    "nonlinear_errors",
    "rsqrt",
    "sigmoid",
    "silu",
]

INTERNAL_FRAC = 20  # fractional bits of table outputs and of the internal exp/rsqrt values
_LOG2E_FRAC = 24
_LOG2E = round(np.log2(np.e) * 2**_LOG2E_FRAC)


class Lut:
    """``f`` on ``[lo, lo + 2**span_log2)`` in ``2**bits`` segments, entries with ``frac`` bits.

    ``table[i] = round(f(lo + i * step) * 2**frac)`` for i = 0 .. 2**bits (inclusive), and an input
    between two entries is interpolated linearly, rounding half up.
    """

    def __init__(self, f, lo: float, span_log2: int, bits: int, frac: int = INTERNAL_FRAC):
        self.lo, self.span_log2, self.bits, self.frac = lo, span_log2, bits, frac
        xs = lo + np.arange(2**bits + 1) * 2.0 ** (span_log2 - bits)
        self.table = np.round(f(xs) * 2.0**frac).astype(np.int64)

    def __call__(self, x_raw, x_frac: int) -> np.ndarray:
        """Interpolated value (``frac`` bits) at raw inputs with ``x_frac`` fractional bits.

        Inputs are clamped to the table's domain.
        """
        lo_raw = round(self.lo * 2**x_frac)
        top = (1 << (self.span_log2 + x_frac)) - 1
        offset = np.clip(np.asarray(x_raw, dtype=np.int64) - lo_raw, 0, top)
        sh = self.span_log2 + x_frac - self.bits  # raw input steps per segment, log2
        if sh <= 0:
            return self.table[offset << -sh]
        idx = offset >> sh
        fr = offset & ((1 << sh) - 1)
        base = self.table[idx]
        return base + shift_round((self.table[idx + 1] - base) * fr, sh, "half_up")


@cache
def _sigmoid_lut(bits: int) -> Lut:
    return Lut(lambda x: 1.0 / (1.0 + np.exp(-x)), 0.0, 4, bits)


@cache
def _exp2_lut(bits: int) -> Lut:
    return Lut(lambda f: 2.0**-f, 0.0, 0, bits)


@cache
def _rsqrt_lut(bits: int) -> Lut:
    return Lut(lambda m: 1.0 / np.sqrt(m), 1.0, 2, bits)  # used on [1, 4)


def sigmoid(x_raw, x_frac: int, lut_bits: int) -> np.ndarray:
    """sigmoid(x) with ``INTERNAL_FRAC`` fractional bits (inputs beyond +-16 give 0 or 1)."""
    x = np.asarray(x_raw, dtype=np.int64)
    pos = _sigmoid_lut(lut_bits)(np.abs(x), x_frac)
    return np.where(x < 0, (1 << INTERNAL_FRAC) - pos, pos)


def silu(x_raw, x_frac: int, out: QFormat, lut_bits: int) -> tuple[np.ndarray, int]:
    """SiLU x * sigmoid(x) in format ``out``: ``(raw, saturations)``."""
    prod = np.asarray(x_raw, dtype=np.int64) * sigmoid(x_raw, x_frac, lut_bits)
    return out.requantize(prod, x_frac + INTERNAL_FRAC)


def exp_neg(x_raw, x_frac: int, out: QFormat, lut_bits: int) -> tuple[np.ndarray, int]:
    """exp(x) for x <= 0 in format ``out``; positive inputs are treated as 0 (exp = 1).

    z = -x log2(e) is rounded to ``INTERNAL_FRAC`` bits and split into n + f; the table gives
    2**-f and a right shift by n (rounding by ``out``'s mode) gives the result.
    """
    x = np.minimum(np.asarray(x_raw, dtype=np.int64), 0)
    z = shift_round(-x * _LOG2E, x_frac + _LOG2E_FRAC - INTERNAL_FRAC, "half_up")
    n = z >> INTERNAL_FRAC
    f = z & ((1 << INTERNAL_FRAC) - 1)
    y = _exp2_lut(lut_bits)(f, INTERNAL_FRAC)  # 2**-f, in (0.5, 1]
    shift = np.minimum(n, 62) + INTERNAL_FRAC - out.frac_bits
    return out._fit(shift_round(y, shift, out.rounding))


def rsqrt(s_raw, s_frac: int, lut_bits: int, newton: int) -> tuple[np.ndarray, np.ndarray]:
    """1 / sqrt(s) for s > 0 as ``(r, p)``: the value is ``r * 2**-INTERNAL_FRAC * 2**-p``.

    s = m * 4**p with m in [1, 4) (found from the bit length); r approximates m**-0.5, in (0.5, 1],
    from the table and then ``newton`` steps r <- r (3 - m r^2) / 2. Inputs below one raw step
    are treated as one step.
    """
    F = INTERNAL_FRAC
    s = np.maximum(np.asarray(s_raw, dtype=np.int64), 1)
    E = _bit_length(s) - 1 - s_frac  # s in [2**E, 2**(E+1))
    p = E >> 1  # floor(E / 2)
    m = shift_round(s, s_frac + 2 * p - F, "truncate")  # m = s / 4**p with F fractional bits
    r = _rsqrt_lut(lut_bits)(m, F)
    for _ in range(newton):
        r2 = shift_round(r * r, F, "half_up")
        mr2 = shift_round(m * r2, F, "half_up")
        r = shift_round(r * ((3 << F) - mr2), F + 1, "half_up")
    return r, p


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values (exact, no float rounding)."""
    n = np.zeros(x.shape, dtype=np.int64)
    x = x.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = x >= (np.int64(1) << step)
        n += np.where(big, step, 0)
        x = np.where(big, x >> step, x)
    return n + (x > 0)


def nonlinear_errors(lut_bits: int, newton: int, out: QFormat | None = None) -> dict:
    """Max and RMS absolute error of each function against float64 over a dense input grid.

    Results use the internal precision (``INTERNAL_FRAC`` bits) except ``exp_neg``, which is
    measured in ``out`` (default Q1.14, the 16-bit decay format). Each entry also states its
    bound: interpolation error h^2/8 max|f''| of the table plus 1.5 output steps.
    """
    out = out or QFormat(1, 14)
    xf = 12
    lsb = 2.0**-INTERNAL_FRAC
    results = {}

    x = np.arange(-16 * 2**xf, 16 * 2**xf)
    xv = x / 2**xf
    ref = 1.0 / (1.0 + np.exp(-xv))
    h = 16 / 2**lut_bits
    results["sigmoid"] = (sigmoid(x, xf, lut_bits) * lsb - ref, h * h / 8 * 0.1 + 1.5 * lsb)

    s_out = QFormat(5, 20)
    y, _ = silu(x, xf, s_out, lut_bits)
    results["silu"] = (
        s_out.to_float(y) - xv * ref,
        16 * (h * h / 8 * 0.1) + 1.5 * lsb + 1.5 * s_out.lsb,
    )

    xe = np.arange(-24 * 2**xf, 1)
    y, _ = exp_neg(xe, xf, out, lut_bits)
    he = 1 / 2**lut_bits
    results["exp_neg"] = (
        out.to_float(y) - np.exp(xe / 2**xf),
        he * he / 8 * np.log(2) ** 2 + 1.5 * out.lsb,
    )

    sf = 16
    s = np.unique(np.round(np.geomspace(1, 2**40, 200_000)).astype(np.int64))
    r, p = rsqrt(s, sf, lut_bits, newton)
    val = r * lsb * 2.0 ** (-p.astype(np.float64))
    ref = 1.0 / np.sqrt(s / 2**sf)
    hr = 4 / 2**lut_bits
    interp = hr * hr / 8 * 0.75
    for _ in range(newton):
        interp = 1.5 * interp * interp  # Newton squares the relative error
    results["rsqrt_relative"] = (val / ref - 1, interp + 4 * lsb)

    return {
        name: {
            "max_abs": float(np.max(np.abs(err))),
            "rms": float(np.sqrt(np.mean(err**2))),
            "bound": float(bound),
        }
        for name, (err, bound) in results.items()
    }
