# amaranth: UnusedElaboratable=no
"""MAC array on the Amaranth simulator: every result word against the golden model's exact sums."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from deltanet_hw.config import preset
from deltanet_hw.hw.mac_array import MacArray, operand_widths, product_multipliers
from deltanet_hw.hw.scheduler import hard_multipliers
from deltanet_hw.sim.amaranth_tb import stream_get, stream_put
from deltanet_hw.sim.vectors import mac_tiles


def run_mac(dut, tiles, expected, seed, stall_p=0.3, label="mac"):
    rng = np.random.default_rng(seed)
    got = []

    def idle():
        return int(rng.integers(1, 4)) if rng.random() < stall_p else 0

    async def put_a(ctx):
        for t in tiles:
            for beat in t.a_beats():
                await stream_put(ctx, dut.a, beat, idle=idle(), name="a")

    async def put_b(ctx):
        for t in tiles:
            for beat in t.b_beats():
                await stream_put(ctx, dut.b, beat, idle=idle(), name="b")

    async def get_c(ctx):
        for _ in expected:
            p = await stream_get(ctx, dut.c, stall=idle(), name="c")
            got.append(([int(p.data[c]) for c in range(dut.cols)], int(p.row), int(p.last)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(put_a, background=True)
    sim.add_testbench(put_b, background=True)
    sim.add_testbench(get_c)
    sim.run()
    for n, ((row, r, last), want) in enumerate(zip(got, expected, strict=True)):
        assert r == n % dut.rows and last == (r == dut.rows - 1), f"{label}: beat {n} framing"
        for c, (g, e) in enumerate(zip(row, want, strict=True)):
            assert g == e, (
                f"{label} seed {seed}: tile {n // dut.rows} row {r} col {c}: expected {e}, got {g}"
            )


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("rows", "cols"), [(3, 2), (1, 1), (2, 4)])
def test_random_tiles_under_stalls(rows, cols, seed):
    dut = MacArray(rows, cols, a_width=6, b_width=9, acc_width=24)
    rng = np.random.default_rng(seed)
    tiles, expected = mac_tiles(rng, rows, cols, 6, 9, n_tiles=12, k_range=(1, 9))
    run_mac(dut, tiles, expected, seed, label=f"{rows}x{cols}")


@pytest.mark.parametrize(
    ("config", "widths", "parts"), [("tiny", (16, 32, 53), 4), ("small", (18, 32, 57), 2)]
)
def test_back_to_back_without_stalls_at_preset_widths(config, widths, parts):
    cfg = preset(config)
    dut = MacArray.from_config(cfg)
    a_w, b_w = operand_widths(cfg)
    assert (dut.a_width, dut.b_width, dut.acc_width) == (a_w, b_w, cfg.acc_bits) == widths
    assert dut.parts == parts
    rng = np.random.default_rng(3)
    tiles, expected = mac_tiles(rng, dut.rows, dut.cols, a_w, b_w, n_tiles=4, k_range=(1, 10))
    run_mac(dut, tiles, expected, 3, stall_p=0.0, label=config)


@pytest.mark.parametrize("seed", [5, 6])
def test_high_steps_of_two_pass_state_products(seed):
    """state_passes = 2: a step marked high weighs 2**17 (the high half of a state word)."""
    cfg = preset("tiny").replace(state_passes=2)
    dut = MacArray.from_config(cfg)
    assert (dut.b_width, dut.split_b, dut.high_shift) == (18, None, 17)
    rng = np.random.default_rng(seed)
    tiles, expected = mac_tiles(
        rng, dut.rows, dut.cols, dut.a_width, dut.b_width, n_tiles=8, k_range=(1, 9), high_shift=17
    )
    assert any(t.high.any() for t in tiles) and not all(t.high.all() for t in tiles)
    run_mac(dut, tiles, expected, seed, label="two-pass")


def test_long_products_keep_the_array_busy():
    """Tiles of K >= min_tile_steps stream with no bubble: one beat (R x C MACs) per cycle."""
    from deltanet_hw.sim.bench_blocks import run_unstalled

    dut = MacArray(4, 4, a_width=8, b_width=8, acc_width=24)
    rng = np.random.default_rng(4)
    tiles, expected = mac_tiles(rng, 4, 4, 8, 8, n_tiles=16, k_range=(dut.min_tile_steps, 20))
    r = run_unstalled(dut, tiles, expected)
    assert r["mismatches"] == 0
    assert r["feed_cycles"] == r["beats"]  # accepted a beat in every cycle
    # fill and final drain only: latency to row 0, its output register, then one row per cycle
    assert r["cycles"] == r["beats"] + dut.latency + dut.rows


def test_bad_parameters():
    with pytest.raises(ValueError, match="rows must be an integer >= 1"):
        MacArray(0, 2, 8, 8, 24)
    with pytest.raises(ValueError, match=r"acc_width \(10\) must hold one product"):
        MacArray(2, 2, 8, 8, 10)


def test_hard_multiplier_counts():
    """18 x 18 multipliers per product, and per core (the array and the solver row): the ecp5
    build (4 x 8, two passes) has 56 MULT18X18D, 40 of them here (BetaPhi and the core have
    16); an 8 x 8 array's build has 152 in one pass (136 here), 88 in two (72)."""
    assert [product_multipliers(18, b) for b in (2, 18, 19, 32, 35, 36)] == [1, 1, 2, 2, 2, 3]
    assert product_multipliers(36, 36) == 9
    ecp5 = preset("ecp5")
    assert hard_multipliers(ecp5) == 4 * 8 + 8
    assert hard_multipliers(ecp5.replace(array_rows=8, state_passes=1)) == 8 * 8 * 2 + 8
    assert hard_multipliers(ecp5.replace(array_rows=8)) == 8 * 8 + 8
    assert hard_multipliers(preset("ice40")) == 2 * 4 + 4


def test_accumulator_carries_across_every_part():
    """Sums that sit on part boundaries (all-ones parts, carries meeting) stay exact."""
    from deltanet_hw.sim.vectors import MacTile, expected_rows

    dut = MacArray(2, 2, a_width=16, b_width=16, acc_width=44)  # 4 parts of 11 bits
    rng = np.random.default_rng(9)
    a_vals = np.array([1, -1, 2**15 - 1, -(2**15), 2**11, -(2**11)])
    b_vals = np.array([2**15 - 1, -(2**15), 1, -1, 2**11 - 1, 2**10, -(2**11)])
    tiles = []
    for _ in range(40):
        K = int(rng.integers(1, 40))
        tiles.append(
            MacTile(
                a=rng.choice(a_vals, (K, 2)),
                b=rng.choice(b_vals, (K, 2)),
                mask=0,
                row0=0,
                col0=0,
            )
        )
    run_mac(dut, tiles, expected_rows(tiles), 9, label="carries")
