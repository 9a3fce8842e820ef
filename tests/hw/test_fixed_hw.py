"""The hardware requantizer equals QFormat.requantize bit for bit."""

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from deltanet_hw.hw.fixed import requantize
from deltanet_hw.qformat import QFormat


def _check_constant_shift(fmt, frac_in, width, values):
    """requantize of a ``width``-bit signed input equals QFormat.requantize for every value."""
    f = QFormat.parse(fmt)
    m = Module()
    x = Signal(signed(width))
    raw, over = requantize(m, x, f, "y", frac_in=frac_in)

    async def tb(ctx):
        for v in values:
            ctx.set(x, int(v))
            want, n = f.requantize(np.array([v]), frac_in)
            assert ctx.get(raw) == int(want[0]), f"{fmt} frac_in {frac_in}: x={v}"
            assert ctx.get(over) == int(n > 0), f"{fmt} frac_in {frac_in}: x={v} overflow"

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize(
    "fmt",
    ["Q3.4", "Q3.4:half_up", "Q3.4:truncate", "UQ2.5", "Q1.6:wrap", "Q-1.9", "Q3.4:half_up:wrap"],
)
@pytest.mark.parametrize("frac_in", [0, 4, 9])
def test_constant_shift(fmt, frac_in):
    values = np.concatenate(
        [np.arange(-600, 600), np.random.default_rng(0).integers(-(2**15), 2**15, 500)]
    )
    _check_constant_shift(fmt, frac_in, 16, values)


@pytest.mark.parametrize("fmt", ["Q3.4", "UQ2.5", "Q1.6:wrap", "UQ4.4:wrap"])
@pytest.mark.parametrize("frac_in", [0, 4, 9])
def test_narrow_input_every_value(fmt, frac_in):
    """Inputs narrower than the format: the range flags sign-extend before their bit tests."""
    _check_constant_shift(fmt, frac_in, 6, range(-32, 32))


def test_variable_shift():
    f = QFormat.parse("Q1.14")
    m = Module()
    x = Signal(signed(40))
    sh = Signal(range(32))
    raw, over = requantize(m, x, f, "y", shift=sh)
    rng = np.random.default_rng(1)
    cases = [
        (int(v), int(s))
        for v, s in zip(rng.integers(-(2**39), 2**39, 400), rng.integers(0, 31, 400), strict=True)
    ]
    cases += [(3 << 10, 11), (1 << 10, 11), (-(1 << 10), 11), (5, 0), (-7, 1)]

    async def tb(ctx):
        for v, s in cases:
            ctx.set(x, v)
            ctx.set(sh, s)
            want, n = f.requantize(np.array([v]), s + f.frac_bits)
            assert ctx.get(raw) == int(want[0]), f"x={v} shift={s}"
            assert ctx.get(over) == int(n > 0)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
