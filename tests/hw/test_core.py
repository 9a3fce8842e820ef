# amaranth: UnusedElaboratable=no
"""The whole core: microcode, cycle model, and RTL against the fixed-point model.

Default tier: microcode checks, one short Amaranth-simulator run, cocotb on Icarus (tiny: several
sequences back to back, tail chunks, loaded / kept / zeroed state, decode, a hazard input, random
stalls; the boundary errors) and on Verilator (tiny). ``--runslow``: T = 1024 at tiny, T = 256 at
small on 4 heads, decode at small, and the 100k-token soak on Verilator.
"""

from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from deltanet_hw.config import load_config
from deltanet_hw.hw.core import CTRL_BITS, REGISTERS, DeltaNetCore
from deltanet_hw.hw.microcode import check_core_config, core_program, tiles
from deltanet_hw.qformat import QFormat
from deltanet_hw.sim.amaranth_tb import stream_get, stream_put
from deltanet_hw.sim.core_run import run_core, run_core_errors, sequence
from deltanet_hw.sim.cycle_model import predict_run
from deltanet_hw.sim.runner import available_simulators
from deltanet_hw.sim.vectors import core_vectors

MODEL_TOLERANCE = 0.02  # the cycle model's error on unstalled runs


def needs(simulator):
    return pytest.mark.skipif(
        simulator not in available_simulators(), reason=f"{simulator} is not installed"
    )


# ---------------------------------------------------------------- microcode


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"gated": True}, "gated"),
        ({"array_rows": 8, "array_cols": 4}, "array_rows"),
        ({"array_rows": 3, "array_cols": 4}, "array_rows"),
        ({"state_passes": 2, "fmt_state": load_config("ice40").fmt_state}, "state_passes"),
        ({"state_passes": 2, "fmt_vnew": QFormat(3, 18)}, "state_passes"),  # a 22-bit B operand
    ],
)
def test_core_refuses_configs_it_cannot_run(overrides, field):
    cfg = replace(load_config("tiny"), **overrides)
    with pytest.raises(ValueError, match=field):
        check_core_config(cfg)
    with pytest.raises(ValueError, match=field):
        DeltaNetCore(cfg)


def test_microcode_covers_the_program():
    """Every product of the chunk program is an instruction; the loader does the scalings."""
    cfg = load_config("tiny")
    names = [i.name for i in core_program(cfg, "chunk")]
    assert names == ["A", "T", "QK", "W", "U", "Vn", "O", "S"]  # Q K^T while the solver runs
    a = core_program(cfg, "chunk")[0]  # fla's A = k_beta @ k.T, strictly lower
    assert [(s.a.buf, s.b.buf) for s in a.steps] == [("Kb", "Kt")] and a.mask == "strict_lower"
    assert [i.name for i in core_program(cfg, "recurrent")] == ["QK", "Vn", "O", "S"]
    instrs = {i.name: i for i in core_program(cfg, "chunk")}
    assert instrs["Vn"].wait and instrs["O"].wait  # they read what was just written
    assert instrs["W"].reads_t and instrs["U"].reads_t  # they wait for the solver, per head


def test_solve_tiles_read_only_written_rows():
    """Row i of the solve reads rows j0 <= k < i of T, all written before (or 0 x A[i, i]).

    Tiles come head by head and row by row (the solver's order)."""
    cfg = load_config("tiny")
    solve = next(i for i in core_program(cfg, "chunk") if i.solve)
    for m in (1, 5, 16):
        order = [(h, row) for h, _i0, _j0, row, *_ in tiles(cfg, solve, m, heads=2)]
        assert order == sorted(order)
        rows = {}
        for _h, _i0, j0, row, _t, lo, hi in tiles(cfg, solve, m):
            assert lo == j0 and hi > lo
            assert hi <= max(row, j0 + 1)
            rows.setdefault(row, []).append(j0)
        assert sorted(rows) == list(range(m))
        for row, starts in rows.items():
            assert starts == list(range(0, row + 1, cfg.array_cols))


# ---------------------------------------------------------------- Amaranth simulator


def test_core_amaranth_simulator_short_sequence():
    """Three tokens, one head, through the Python simulator: every output word."""
    cfg = load_config("tiny")
    v = core_vectors(cfg, 3, heads=1, seed=5)
    dut = DeltaNetCore(cfg)
    got = []

    async def bench(ctx):
        for w in v.conv_writes:
            await stream_put(ctx, dut.conv_wr, w)
        for reg, value in (("SEQ_LEN", 3), ("HEADS", 1), ("CTRL", 1 << CTRL_BITS["START"])):
            ctx.set(dut.csr.addr, REGISTERS[reg])
            ctx.set(dut.csr.w_data, value)
            ctx.set(dut.csr.w_en, 1)
            await ctx.tick()
        ctx.set(dut.csr.w_en, 0)

        for w in v.words:  # one chunk: every word is accepted before the first output
            await stream_put(ctx, dut.tok_in, w, name="tok_in")
        for _ in v.expected_o:
            beat = await stream_get(ctx, dut.tok_out, max_wait=5000, name="tok_out")
            got.append(int(beat.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == v.expected_o


# ---------------------------------------------------------------- RTL (cocotb)


def _check(records, tolerance=MODEL_TOLERANCE):
    for rec in records:
        label = f"{rec['mode']} T={rec['tokens']} H={rec['heads']} seed {rec['seed']}"
        assert rec["mismatches"] == 0, label
        if rec["stall_p"] == 0:
            err = abs(rec["predicted_cycles"] - rec["cycles"]) / rec["cycles"]
            assert err <= tolerance, (
                f"{label}: cycle model {rec['predicted_cycles']} vs RTL {rec['cycles']} ({err:.1%})"
            )


TINY_SEQUENCES = [
    sequence(37, heads=2, seed=11, state="load"),  # two chunks and a tail of 5
    sequence(20, heads=2, seed=12, state="keep"),  # the next sequence continues the state
    sequence(6, heads=1, seed=13, mode="recurrent"),  # decode, one head of two, zeroed state
    sequence(16, heads=2, seed=14, hazard="correlated_keys_beta_0.95"),
]


@needs("icarus")
def test_core_icarus_tiny_sequences_under_stalls(tmp_path):
    cfg = load_config("tiny")
    _check(run_core(cfg, TINY_SEQUENCES, simulator="icarus", build_dir=tmp_path, stall_p=0.3))


@needs("icarus")
def test_core_icarus_cycles_match_the_model(tmp_path):
    cfg = load_config("tiny")
    seqs = [sequence(40, heads=2, seed=21), sequence(3, heads=2, seed=22, mode="recurrent")]
    _check(run_core(cfg, seqs, simulator="icarus", build_dir=tmp_path, stall_p=0.0))


@needs("icarus")
def test_core_icarus_ice40(tmp_path):
    """The iCE40 preset: a 2 x 4 array (A reads start inside a bank row) and a 16-bit state."""
    cfg = load_config("ice40")
    seqs = [
        sequence(21, heads=2, seed=71, state="load"),
        sequence(3, heads=2, seed=72, mode="recurrent", state="keep"),
    ]
    _check(run_core(cfg, seqs, simulator="icarus", build_dir=tmp_path, stall_p=0.2))


@needs("icarus")
def test_core_icarus_boundary_errors(tmp_path):
    run_core_errors(load_config("tiny"), simulator="icarus", build_dir=tmp_path)


@needs("verilator")
def test_core_verilator_tiny(tmp_path):
    cfg = load_config("tiny")
    seqs = [
        sequence(50, heads=2, seed=31, state="load"),
        sequence(4, heads=2, seed=32, mode="recurrent", state="keep"),
    ]
    _check(run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path, stall_p=0.25))


@needs("verilator")
def test_core_verilator_tiny_state_in_two_passes(tmp_path):
    """state_passes = 2: every product with the state on one multiplier, low then high half."""
    cfg = load_config("tiny").replace(state_passes=2)
    seqs = [
        sequence(37, heads=2, seed=81, state="load"),
        sequence(3, heads=2, seed=82, mode="recurrent", state="keep"),
    ]
    _check(run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path / "s", stall_p=0.25))
    _check(run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path / "u", stall_p=0.0))


def test_two_pass_state_steps_in_the_cycle_model():
    """Twice the steps for the products that read the state, the same for the others."""
    one, two = load_config("small"), load_config("small").replace(state_passes=2)
    by_name = {i.name: i for i in core_program(two, "chunk")}
    assert [s.passes for s in by_name["Vn"].steps] == [2]  # U - W S
    assert [s.passes for s in by_name["O"].steps] == [2, 1]  # Q S + (Q K^T) Vn
    assert all(s.passes == 1 for n in ("A", "W", "U", "S") for s in by_name[n].steps)
    a, b = predict_run(one, 64, 4, "chunk"), predict_run(two, 64, 4, "chunk")
    assert a["cycles"] < b["cycles"] < 1.5 * a["cycles"]


def test_cycle_model_counts_every_chunk():
    cfg = load_config("tiny")
    one = predict_run(cfg, 16, 2, "chunk")["cycles"]
    two = predict_run(cfg, 32, 2, "chunk")["cycles"]
    assert one < two < 2 * one + 200


@pytest.mark.slow
@needs("verilator")
def test_core_verilator_tiny_1024_tokens(tmp_path):
    cfg = load_config("tiny")
    seqs = [sequence(1024, heads=2, seed=41, state="load"), sequence(1000, heads=2, seed=42)]
    _check(
        run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path, stall_p=0.1, optimize=True)
    )


@pytest.mark.slow
@needs("verilator")
def test_core_verilator_tiny_hazards(tmp_path):
    """ALGORITHM.md section 8 inputs; the large initial state saturates (SATURATED expected)."""
    cfg = load_config("tiny")
    seqs = [
        sequence(100, heads=2, seed=81, hazard=name)
        for name in (
            "correlated_keys_beta_0.95",
            "residual_cancellation",
            "tiny_keys_1e-2",
            "tiny_keys_1e-4",
            "large_initial_state",
        )
    ]
    recs = run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path, stall_p=0.2)
    _check(recs)
    assert recs[-1]["saturated"], "the large initial state should saturate in the model"


@pytest.mark.slow
@needs("verilator")
def test_core_verilator_small_prefill_and_decode(tmp_path):
    cfg = load_config("small")
    seqs = [
        sequence(256, heads=4, seed=51, state="load"),
        sequence(70, heads=4, seed=52, state="keep"),
        sequence(8, heads=4, seed=53, mode="recurrent", state="keep"),
    ]
    _check(
        run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path, stall_p=0.1, optimize=True)
    )


@pytest.mark.slow
@needs("verilator")
def test_core_verilator_ecp5_preset(tmp_path):
    """The configuration the ULX3S-85F build carries (d = 128, chunk 64): a loaded state, one
    whole chunk and a partial one, then decode tokens."""
    cfg = load_config("ecp5")
    seqs = [
        sequence(100, heads=1, seed=71, state="load"),
        sequence(4, heads=1, seed=72, mode="recurrent", state="keep"),
    ]
    _check(run_core(cfg, seqs, simulator="verilator", build_dir=tmp_path, stall_p=0.1))


@pytest.mark.slow
@needs("verilator")
def test_core_verilator_soak_100k_tokens(tmp_path):
    cfg = load_config("tiny")
    recs = run_core(
        cfg,
        [sequence(100_000, heads=2, seed=61)],
        simulator="verilator",
        build_dir=tmp_path,
        stall_p=0.05,
        optimize=True,
    )
    _check(recs)
    assert recs[0]["words_out"] == 100_000 * 2 * cfg.d_v
