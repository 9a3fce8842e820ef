"""Fixed-point model and chunk program: executors agree, bits are defined, saturation is counted."""

import numpy as np
import pytest

from deltanet_hw.config import CoreConfig, preset
from deltanet_hw.golden import (
    chunk_delta_rule,
    fixed_delta_rule,
    fixed_recurrent_delta_rule,
    l2norm,
    recurrent_delta_rule,
)
from deltanet_hw.golden.executor import FloatArith, run_sequence
from deltanet_hw.golden.fixed import beta_phi
from deltanet_hw.golden.layer import core_options, delta_core
from deltanet_hw.golden.nonlinear import exp_neg, nonlinear_errors
from deltanet_hw.golden.program import Decay, Solve, chunk_program
from deltanet_hw.golden.vectors import random_inputs, rel_rms
from deltanet_hw.qformat import QFormat

TINY = preset("tiny")


def float_inputs(seed, T, H=2, K=16, V=8, gated=False):
    rng = np.random.default_rng(seed)
    x = {
        "q": l2norm(rng.standard_normal((H, T, K))),
        "k": l2norm(rng.standard_normal((H, T, K))),
        "v": rng.standard_normal((H, T, V)),
        "beta": rng.uniform(0.05, 1, (H, T)),
        "g": -rng.uniform(0, 0.3, (H, T)) if gated else None,
        "S": rng.standard_normal((H, K, V)),
    }
    return x


def fla_layout(x):
    return {
        "q": x["q"].transpose(1, 0, 2)[None],
        "k": x["k"].transpose(1, 0, 2)[None],
        "v": x["v"].transpose(1, 0, 2)[None],
        "beta": x["beta"].T[None],
        "g": None if x["g"] is None else x["g"].T[None],
        "initial_state": x["S"][None],
    }


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize(("chunk_size", "T"), [(16, 37), (4, 9), (8, 1), (5, 5)])
def test_float_program_equals_chunk_delta_rule(gated, chunk_size, T):
    x = float_inputs(chunk_size + T, T, gated=gated)
    cfg = TINY.replace(chunk_size=chunk_size, gated=gated, d_k=16, d_v=8)
    o, S = run_sequence(cfg, FloatArith(), x["q"], x["k"], x["v"], x["beta"], x["g"], x["S"])
    o_ref, s_ref = chunk_delta_rule(
        **fla_layout(x), scale=1.0, output_final_state=True, chunk_size=chunk_size
    )
    assert rel_rms(o.transpose(1, 0, 2)[None], o_ref) <= 1e-12
    assert rel_rms(S[None], s_ref) <= 1e-12
    o, S = run_sequence(
        cfg, FloatArith(), x["q"], x["k"], x["v"], x["beta"], x["g"], x["S"], mode="recurrent"
    )
    o_rec, s_rec = recurrent_delta_rule(**fla_layout(x), scale=1.0, output_final_state=True)
    assert rel_rms(o.transpose(1, 0, 2)[None], o_rec) <= 1e-12
    assert rel_rms(S[None], s_rec) <= 1e-12


def test_program_structure():
    full, tail = chunk_program(16, False), chunk_program(5, False)
    assert (full.rows, tail.rows) == (16, 5)
    assert [op.dest for op in full.ops if not isinstance(op, Decay)] == [
        op.dest for op in tail.ops if not isinstance(op, Decay)
    ]
    assert any(isinstance(op, Solve) for op in full.ops)
    decode = chunk_program(1, True, decode=True)
    assert not any(isinstance(op, Solve) for op in decode.ops)
    assert isinstance(decode.ops[0], Decay) and decode.ops[0].outputs == ("eG", "eGC")
    assert [op.dest for op in decode.ops[-2:]] == ["O", "S"]
    with pytest.raises(ValueError, match="decode program has one row"):
        chunk_program(2, False, decode=True)


def straightforward_recurrence(cfg, x, S):
    """An independent per-token fixed-point recurrence with the decode program's roundings."""

    def rq(fmt, value, frac):
        return getattr(cfg, fmt).requantize(value, frac)[0]

    f = {
        n: getattr(cfg, n).frac_bits
        for n in (
            "fmt_qk",
            "fmt_v",
            "fmt_beta",
            "fmt_decay",
            "fmt_attn",
            "fmt_vnew",
            "fmt_state",
            "fmt_gate",
        )
    }
    H, T, _ = x["k"].shape
    o = np.zeros((H, T, cfg.d_v), dtype=np.int64)
    for t in range(T):
        for h in range(H):
            q, k, v, b = x["q"][h, t], x["k"][h, t], x["v"][h, t], x["beta"][h, t]
            s = S[h]
            if cfg.gated:
                a = int(exp_neg(x["g"][h, t], f["fmt_gate"], cfg.fmt_decay, cfg.lut_bits)[0])
                b_k = rq("fmt_beta", b * a, f["fmt_beta"] + f["fmt_decay"])
                q = rq("fmt_qk", q * a, f["fmt_qk"] + f["fmt_decay"])
            else:
                b_k = b
            kb = rq("fmt_qk", k * b_k, f["fmt_qk"] + f["fmt_beta"])
            vb = rq("fmt_v", v * b, f["fmt_v"] + f["fmt_beta"])
            qk = rq("fmt_attn", int(np.dot(x["q"][h, t], k)), 2 * f["fmt_qk"])
            top = f["fmt_qk"] + f["fmt_state"]
            pred = np.array(
                [sum(int(kb[i]) * int(s[i, j]) for i in range(cfg.d_k)) for j in range(cfg.d_v)],
                dtype=np.int64,
            )
            vn = rq("fmt_vnew", (vb << (top - f["fmt_v"])) - pred, top)
            read = np.array(
                [sum(int(q[i]) * int(s[i, j]) for i in range(cfg.d_k)) for j in range(cfg.d_v)],
                dtype=np.int64,
            )
            f_o = f["fmt_attn"] + f["fmt_vnew"]
            top_o = max(top, f_o)
            o[h, t] = rq(
                "fmt_o", (read << (top_o - top)) + ((int(qk) * vn) << (top_o - f_o)), top_o
            )
            upd = np.outer(k, vn)  # frac fmt_qk + fmt_vnew
            f_u = f["fmt_qk"] + f["fmt_vnew"]
            if cfg.gated:
                old, f_old = s * a, f["fmt_state"] + f["fmt_decay"]
            else:
                old, f_old = s, f["fmt_state"]
            top_s = max(f_u, f_old)
            S[h] = rq("fmt_state", (old << (top_s - f_old)) + (upd << (top_s - f_u)), top_s)
    return o, S


@pytest.mark.parametrize("gated", [False, True])
def test_decode_executor_equals_straightforward_recurrence(gated):
    cfg = TINY.replace(gated=gated, d_k=8, d_v=4, heads=2)
    x = random_inputs(cfg, 12, seed=3)
    res = fixed_recurrent_delta_rule(**x, cfg=cfg)
    raw = beta_phi(
        cfg, **{k: v for k, v in x.items() if k != "conv_weights"}, conv_weights=x["conv_weights"]
    )
    heads = {n: None if raw[n] is None else np.moveaxis(raw[n][0], 1, 0) for n in raw}
    o, S = straightforward_recurrence(cfg, heads, np.zeros((2, 8, 4), dtype=np.int64))
    np.testing.assert_array_equal(res.o_raw[0], o.transpose(1, 0, 2))
    np.testing.assert_array_equal(res.final_state_raw[0], S)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_tile_order_cannot_change_a_bit(gated, mode):
    cfg = TINY.replace(gated=gated)
    x = random_inputs(cfg, 40, seed=7)
    ref = fixed_delta_rule(**x, cfg=cfg, mode=mode)
    for tile in (1, 3, 16):
        other = fixed_delta_rule(**x, cfg=cfg, mode=mode, tile=tile)
        np.testing.assert_array_equal(other.o_raw, ref.o_raw)
        np.testing.assert_array_equal(other.final_state_raw, ref.final_state_raw)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("feature_map", ["silu", "relu", "elu1", "identity"])
def test_fixed_tracks_float(gated, feature_map):
    cfg = TINY.replace(gated=gated, feature_map=feature_map)
    x = random_inputs(cfg, 70, seed=11, batch=2)
    h0 = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 2, 16, 16))
    o_ref, s_ref = delta_core(**x, **core_options(cfg), initial_state=h0, output_final_state=True)
    for mode in ("chunk", "recurrent"):
        r = fixed_delta_rule(**x, cfg=cfg, initial_state=h0, mode=mode)
        assert r.total_saturations == 0
        assert rel_rms(r.o, o_ref) < 3e-3, mode
        assert rel_rms(r.final_state, s_ref) < 3e-3, mode


def test_nonlinear_functions_within_stated_error():
    errors = nonlinear_errors(TINY.lut_bits, TINY.rsqrt_newton)
    assert set(errors) == {"sigmoid", "silu", "exp_neg", "rsqrt_relative"}
    for name, e in errors.items():
        assert e["max_abs"] <= e["bound"], (name, e)
        assert e["rms"] <= e["max_abs"]
    assert errors["sigmoid"]["bound"] < 1e-4 and errors["rsqrt_relative"]["bound"] < 1e-5


def test_saturation_is_counted_never_wrapped():
    cfg = TINY.replace(short_conv=False, feature_map="identity")
    x = random_inputs(cfg, 20, seed=1)
    x["v"][0, 3, 0, :] = 100.0  # beyond fmt_input's +-16
    big_state = np.full((1, 2, 16, 16), 50.0)  # beyond fmt_state's +-8
    r = fixed_delta_rule(**x, cfg=cfg, initial_state=big_state)
    assert r.saturations["input"] == 16
    assert r.saturations["initial_state"] == 2 * 16 * 16
    assert r.total_saturations >= 16 + 512
    assert np.all(r.final_state <= cfg.fmt_state.max_value)
    # in-range inputs saturate nothing
    assert fixed_delta_rule(**random_inputs(cfg, 20, seed=1), cfg=cfg).total_saturations == 0


def test_output_saturation_sets_the_count():
    cfg = TINY.replace(short_conv=False, feature_map="identity", fmt_o=QFormat(-3, 18))
    r = fixed_delta_rule(**random_inputs(cfg, 30, seed=2), cfg=cfg)
    assert r.saturations["O"] > 0
    assert cfg.fmt_o.min_value <= r.o.min() and r.o.max() <= cfg.fmt_o.max_value


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"q": np.full((1, 4, 2, 16), np.nan)}, "q contains NaN or Inf"),
        ({"v": np.zeros((1, 4, 2, 15))}, "v must have shape"),
        ({"g": np.zeros((1, 4, 2))}, "g .* must be given exactly when the config is gated"),
        ({"conv_weights": None}, "conv_weights .* must be given exactly"),
        ({"initial_state": np.full((1, 2, 16, 16), np.inf)}, "initial_state contains NaN"),
    ],
)
def test_bad_input(change, pattern):
    x = {**random_inputs(TINY, 4, seed=0), **change}
    with pytest.raises(ValueError, match=pattern):
        fixed_delta_rule(**x, cfg=TINY)


def test_sum_norm_refused_and_narrow_accumulator():
    with pytest.raises(ValueError, match="L2 normalisation only"):
        fixed_delta_rule(**random_inputs(TINY, 4), cfg=TINY.replace(qk_norm="sum"))
    with pytest.raises(ValueError, match=r"acc_bits must be >= \d+ for the exact sum of"):
        TINY.replace(acc_bits=40)


def test_formats_round_trip_and_override():
    cfg = preset("small").replace(fmt_o=QFormat.parse("Q1.14:truncate"))
    back = CoreConfig.from_json(cfg.to_json())
    assert back == cfg and str(back.fmt_o) == "Q1.14:truncate"
    with pytest.raises(ValueError, match="fmt_o: a format looks like"):
        CoreConfig.from_dict({"fmt_o": "16 bits"})


def test_study_hazard_inputs_behave_as_described():
    from deltanet_hw.golden.study import hazard_inputs, measure

    cfg = TINY.replace(heads=2)
    x, h0 = hazard_inputs(cfg, "large_initial_state", 24)
    assert measure(cfg, x, initial_state=h0)["saturations"] > 0  # flagged, not silent
    raw = cfg.replace(short_conv=False, feature_map="identity")
    x, _ = hazard_inputs(raw, "tiny_keys_1e-4", 24)
    k_in, _ = raw.fmt_input.from_float(x["k"])
    assert np.mean(k_in == 0) > 0.9  # most key components fall below the input step
    assert measure(raw, x)["rel_rms_state"] > 0.5  # and the result is far from float64
