# amaranth: UnusedElaboratable=no
"""BetaPhi pipeline: every output word equals the golden fixed-point beta/phi stages."""

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from deltanet_hw.config import preset
from deltanet_hw.hw.beta_phi import BetaPhi, _top_bit
from deltanet_hw.sim.amaranth_tb import stream_get, stream_put
from deltanet_hw.sim.vectors import beta_phi_vectors


def run_beta_phi(cfg, tokens, seed, stall_p=0.3):
    dut = BetaPhi(cfg)
    v = beta_phi_vectors(cfg, tokens, seed)
    rng = np.random.default_rng(seed)
    got = []

    def pause():
        return int(rng.integers(1, 3)) if rng.random() < stall_p else 0

    async def producer(ctx):
        for w in v.conv_writes:
            await stream_put(ctx, dut.conv_wr, w, name="conv_wr")
        for w in v.words:
            await stream_put(ctx, dut.i, w, idle=pause(), name="i")

    async def consumer(ctx):
        for _ in v.expected:
            p = await stream_get(ctx, dut.o, stall=pause(), max_wait=5000, name="o")
            got.append((p.kind, int(p.head), int(p.chan), int(p.last), int(p.data)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    for n, (g, e) in enumerate(zip(got, v.expected, strict=True)):
        assert g == e, (
            f"{cfg.name} seed {seed}: word {n} (kind {e[0].name}, head {e[1]}, index "
            f"{e[2]}): expected {e}, got {g}"
        )


@pytest.mark.parametrize("config", ["tiny", "ice40", "small"])
def test_matches_golden_under_stalls(config):
    cfg = preset(config).replace(heads=2)
    run_beta_phi(cfg, tokens=3, seed=1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"gated": True},
        {"feature_map": "relu", "short_conv": False},
        {"feature_map": "identity", "beta_mode": "neg_eigval"},
        {"beta_mode": "constant", "beta_constant": 0.5},
        {"scale": 1.0},
    ],
)
def test_options(overrides):
    run_beta_phi(preset("tiny").replace(**overrides), tokens=2, seed=2)


def test_unsupported_options_fail_early():
    with pytest.raises(ValueError, match="elu1"):
        BetaPhi(preset("tiny").replace(feature_map="elu1"))


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_beta_phi_rtl(simulator, tmp_path):
    from deltanet_hw.sim.runner import available_simulators, run_cocotb, write_verilog

    if simulator not in available_simulators():
        pytest.skip(f"{simulator} not installed")
    cfg = preset("tiny")
    v = write_verilog(BetaPhi(cfg), "beta_phi", tmp_path / "beta_phi.v", cfg)
    run_cocotb(
        verilog=v,
        toplevel="beta_phi",
        module="deltanet_hw.sim.cocotb.tb_beta_phi",
        simulator=simulator,
        build_dir=tmp_path / "build",
        params={"config_json": str(v.with_suffix(".json")), "tokens": 3, "seed": 6, "stall_p": 0.3},
    )


def test_one_word_per_cycle_in_steady_state():
    from deltanet_hw.sim.bench_blocks import beta_phi_throughput

    r = beta_phi_throughput(preset("small"), tokens=3)
    assert r["mismatches"] == 0
    assert r["words_per_cycle"] > 0.95  # the normalisation latency is hidden by four buffers


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 11, 47])
def test_top_bit_tree(width):
    """The normaliser's priority encoder (a Mux tree): the highest set bit, 0 for 0 and 1."""
    x, y = Signal(width), Signal(range(width + 1))
    m = Module()
    m.d.comb += y.eq(_top_bit(x))
    rng = np.random.default_rng(width)
    if width <= 11:
        values = range(1 << width)
    else:  # every bit length, several values each
        values = [0]
        for n in range(1, width + 1):
            values += [int(v) for v in rng.integers(1 << (n - 1), 1 << n, size=8)]

    async def bench(ctx):
        for v in values:
            want = max(v.bit_length() - 1, 0)
            ctx.set(x, v)
            assert ctx.get(y) == want, f"width {width}: x={v} expected {want}, got {ctx.get(y)}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
