"""Fixed-point number formats, shared by the golden model (golden/) and the hardware (hw/).

A :class:`QFormat` is ``signed`` (two's complement) or unsigned, with ``int_bits`` integer bits
(not counting the sign) and ``frac_bits`` fractional bits: a raw integer ``r`` means
``r * 2**-frac_bits``.
Its text form is ``Q<int>.<frac>`` (signed) or ``UQ<int>.<frac>``, with ``:<rounding>`` and
``:wrap`` suffixes when they differ from the defaults (round half to even, saturate), e.g.
``Q4.11``, ``UQ1.15:truncate``, ``Q7.24:half_up:wrap``.

All arithmetic is on int64 NumPy arrays. :meth:`QFormat.requantize` is the one quantization step
of the whole design: it turns an exact integer with some number of fractional bits into this format
(round, then saturate or wrap) and counts the values that did not fit. The hardware implements the
same step, so models and RTL agree bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_WIDTH", "OVERFLOWS", "ROUNDINGS", "QFormat", "shift_round"]

ROUNDINGS = ("half_even", "half_up", "truncate")
OVERFLOWS = ("saturate", "wrap")
MAX_WIDTH = 53  # raw values convert to float64 exactly
_TEXT = re.compile(r"^(U?)Q(-?\d+)\.(\d+)((?::[a-z_]+)*)$")


def shift_round(x, shift, rounding: str = "half_even") -> np.ndarray:
    """``x * 2**-shift`` rounded to an integer; ``shift`` is an int or an int array.

    Where ``shift`` <= 0 the result is exact (a left shift). ``truncate`` rounds toward minus
    infinity (an arithmetic right shift), ``half_up`` rounds ties toward plus infinity,
    ``half_even`` rounds ties to the even neighbour.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(-shift, 0)
    s = np.maximum(shift, 0)
    if rounding == "truncate":
        out = x >> s
    else:
        half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
        if rounding == "half_up":
            out = (x + half) >> s
        else:
            q = x >> s
            r = x - (q << s)
            out = q + (((r > half) | ((r == half) & ((q & 1) == 1))) & (s > 0))
    return np.where(shift < 0, x << left, out)


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format.

    Parameters
    ----------
    int_bits : int
        Integer bits, not counting the sign (may be negative for small-magnitude quantities).
    frac_bits : int
        Fractional bits (>= 0).
    signed : bool
        Two's complement when true.
    rounding : {"half_even", "half_up", "truncate"}
    overflow : {"saturate", "wrap"}
    """

    int_bits: int
    frac_bits: int
    signed: bool = True
    rounding: str = "half_even"
    overflow: str = "saturate"

    def __post_init__(self):
        for name in ("int_bits", "frac_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"QFormat {name} must be an integer, not {value!r}")
        if self.frac_bits < 0:
            raise ValueError(f"QFormat frac_bits must be >= 0, not {self.frac_bits}")
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(
                f"QFormat width (sign + int_bits + frac_bits) must be in "
                f"[1, {MAX_WIDTH}], not {self.width}"
            )
        if not isinstance(self.signed, bool):
            raise ValueError(f"QFormat signed must be true or false, not {self.signed!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(
                f"QFormat rounding must be one of {', '.join(ROUNDINGS)}, not {self.rounding!r}"
            )
        if self.overflow not in OVERFLOWS:
            raise ValueError(
                f"QFormat overflow must be one of {', '.join(OVERFLOWS)}, not {self.overflow!r}"
            )

    # -- properties ------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Bits of a raw word."""
        return int(self.signed) + self.int_bits + self.frac_bits

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> float:
        return 2.0**-self.frac_bits

    @property
    def min_value(self) -> float:
        return self.min_raw * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_raw * self.lsb

    # -- text form -------------------------------------------------------------------------
    def __str__(self) -> str:
        text = f"{'' if self.signed else 'U'}Q{self.int_bits}.{self.frac_bits}"
        if self.rounding != "half_even":
            text += f":{self.rounding}"
        if self.overflow != "saturate":
            text += f":{self.overflow}"
        return text

    @classmethod
    def parse(cls, text: str) -> QFormat:
        """Read ``Q4.11``, ``UQ1.15:truncate``, ``Q7.24:half_up:wrap`` ..."""
        m = _TEXT.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"a format looks like Q4.11 or UQ1.15[:rounding][:wrap], not {text!r}")
        kwargs = {"rounding": "half_even", "overflow": "saturate"}
        for option in filter(None, m.group(4).split(":")):
            if option in ROUNDINGS:
                kwargs["rounding"] = option
            elif option in OVERFLOWS:
                kwargs["overflow"] = option
            else:
                raise ValueError(
                    f"unknown format option {option!r} in {text!r}; options: "
                    f"{', '.join(ROUNDINGS + OVERFLOWS)}"
                )
        return cls(int(m.group(2)), int(m.group(3)), signed=not m.group(1), **kwargs)

    # -- conversions -----------------------------------------------------------------------
    def _fit(self, raw: np.ndarray) -> tuple[np.ndarray, int]:
        """Saturate or wrap into range; return the values and how many were out of range."""
        out = (raw < self.min_raw) | (raw > self.max_raw)
        count = int(np.count_nonzero(out))
        if not count:
            return raw, 0
        if self.overflow == "saturate":
            return np.clip(raw, self.min_raw, self.max_raw), count
        span = np.int64(1) << np.int64(self.width)
        wrapped = (raw - self.min_raw) & (span - 1)
        return wrapped + self.min_raw, count

    def from_float(self, x, name: str = "value") -> tuple[np.ndarray, int]:
        """Round real numbers into this format: ``(raw int64 array, count out of range)``.

        NaN and Inf are refused with a ``ValueError`` naming ``name``.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or Inf: fixed point cannot represent them")
        y = x * 2.0**self.frac_bits  # exact: a power of two
        if self.rounding == "truncate":
            y = np.floor(y)
        elif self.rounding == "half_up":
            y = np.floor(y + 0.5)
        else:
            y = np.rint(y)  # ties to even
        limit = 2.0**62
        big = (y < -limit) | (y > limit)  # beyond int64: certainly out of range
        raw = np.clip(y, -limit, limit).astype(np.int64)
        if self.overflow == "wrap" and np.any(big):
            raise ValueError(f"{name} is too large to wrap into {self}")
        return self._fit(raw)

    def to_float(self, raw) -> np.ndarray:
        """Exact real value of raw words."""
        return np.asarray(raw, dtype=np.int64).astype(np.float64) * self.lsb

    def requantize(self, raw, frac_in: int) -> tuple[np.ndarray, int]:
        """Bring an exact integer with ``frac_in`` fractional bits into this format.

        Rounds by this format's rounding mode, then saturates (or wraps); returns
        ``(raw, count out of range)``.
        """
        return self._fit(shift_round(raw, frac_in - self.frac_bits, self.rounding))

    def const(self, value: float, name: str = "constant") -> int:
        """One real constant in this format; a constant out of range is a ``ValueError``."""
        raw, over = self.from_float(np.float64(value), name)
        if over:
            raise ValueError(
                f"{name} = {value} does not fit {self} ([{self.min_value}, {self.max_value}])"
            )
        return int(raw)
