"""Layer-level helpers: short convolution, activations, normalisation, beta, gate, whole layer."""

import numpy as np
import pytest

from deltanet_hw.config import FEATURE_MAPS
from deltanet_hw.golden.layer import (
    ACTIVATIONS,
    beta_from_logits,
    beta_schedule,
    deltanet_layer,
    gate_init,
    gdn_gate,
    l2norm,
    rms_norm,
    short_conv,
    sum_norm,
)
from deltanet_hw.golden.vectors import rel_rms


def test_short_conv_is_causal_with_last_tap_on_current_token():
    x = np.zeros((1, 10, 1))
    x[0, 3, 0] = 1.0  # an impulse at t = 3
    w = np.array([[0.1, 0.2, 0.3, 0.4]])
    y = short_conv(x, w)[0, :, 0]
    np.testing.assert_array_equal(y, [0, 0, 0, 0.4, 0.3, 0.2, 0.1, 0, 0, 0])


def test_short_conv_restarts_at_sequence_starts():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 9, 2, 3))
    w = rng.standard_normal((2, 3, 4))
    cu = np.array([0, 4, 9])
    y = short_conv(x, w, cu_seqlens=cu)
    np.testing.assert_allclose(y[:, 4:], short_conv(x[:, 4:], w), rtol=0, atol=1e-15)
    np.testing.assert_allclose(y[:, :4], short_conv(x[:, :4], w), rtol=0, atol=1e-15)


def test_short_conv_bad_weight_shape():
    with pytest.raises(ValueError, match="weight must have shape"):
        short_conv(np.zeros((1, 4, 3)), np.zeros((2, 4)))


def test_activations():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert tuple(ACTIVATIONS) == FEATURE_MAPS
    np.testing.assert_allclose(ACTIVATIONS["silu"](x), x / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_array_equal(ACTIVATIONS["relu"](x), [0, 0, 0, 0.5, 3.0])
    np.testing.assert_allclose(ACTIVATIONS["elu1"](x), [np.exp(-2), np.exp(-0.5), 1, 1.5, 4])
    np.testing.assert_array_equal(ACTIVATIONS["identity"](x), x)


def test_l2norm_eps_inside_sqrt():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-4, 0.0]])
    y = l2norm(x)
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 0.0])  # zero keys stay zero, no NaN
    np.testing.assert_allclose(y[2, 0], 1e-4 / np.sqrt(1e-8 + 1e-6), rtol=1e-14)  # not 1.0


def test_sum_norm():
    np.testing.assert_allclose(sum_norm(np.array([1.0, 3.0])), [0.25, 0.75])
    with pytest.raises(ValueError, match="zero sum"):
        sum_norm(np.array([1.0, -1.0]))


def test_beta_modes():
    logits = np.array([-1.0, 0.0, 2.0])
    s = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(beta_from_logits(logits), s, rtol=1e-15)
    np.testing.assert_allclose(beta_from_logits(logits, "neg_eigval"), 2 * s, rtol=1e-15)
    np.testing.assert_array_equal(beta_from_logits(logits, "constant", 0.5), [0.5] * 3)
    with pytest.raises(ValueError, match="beta mode must be one of"):
        beta_from_logits(logits, "tanh")
    with pytest.raises(ValueError, match=r"constant beta must be in \(0, 2\]"):
        beta_from_logits(logits, "constant", 3.0)
    np.testing.assert_allclose(beta_schedule(3, 0.5, 1.0), [0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="beta schedule"):
        beta_schedule(0, 0.5, 1.0)


def test_gdn_gate():
    rng = np.random.default_rng(0)
    A_log, dt_bias = gate_init(4, rng)
    assert np.all(np.exp(A_log) <= 16)
    dt = np.log1p(np.exp(dt_bias))  # softplus(dt_bias) recovers dt
    assert np.all((dt >= 1e-3 - 1e-12) & (dt <= 1e-1 + 1e-12))
    a = rng.standard_normal((1, 5, 4))
    g = gdn_gate(a, A_log, dt_bias)
    np.testing.assert_allclose(g, -np.exp(A_log) * np.log1p(np.exp(a + dt_bias)), rtol=1e-13)
    assert np.all(g <= 0)
    with pytest.raises(ValueError, match="A_log and dt_bias must have shape"):
        gdn_gate(a, A_log[:2], dt_bias)


def layer_inputs(seed, T=40, H=2, K=16, V=16):
    rng = np.random.default_rng(seed)
    return {
        "q": rng.standard_normal((1, T, H, K)),
        "k": rng.standard_normal((1, T, H, K)),
        "v": rng.standard_normal((1, T, H, V)),
        "beta_logits": rng.standard_normal((1, T, H)),
        "conv_weights": {
            n: rng.standard_normal((H, d, 4)) * 0.5 for n, d in (("q", K), ("k", K), ("v", V))
        },
    }


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
@pytest.mark.parametrize("gated", [False, True])
def test_layer_chunk_equals_recurrent(feature_map, gated):
    x = layer_inputs(1)
    if gated:
        rng = np.random.default_rng(9)
        A_log, dt_bias = gate_init(2, rng)
        x.update(gate_a=rng.standard_normal((1, 40, 2)), A_log=A_log, dt_bias=dt_bias)
    o_c, s_c = deltanet_layer(
        **x,
        feature_map=feature_map,
        mode="chunk",
        chunk_size=16,
        output_final_state=True,
        norm_eps=1e-12,
    )
    o_r, s_r = deltanet_layer(
        **x, feature_map=feature_map, mode="recurrent", output_final_state=True, norm_eps=1e-12
    )
    assert o_c.shape == (1, 40, 2, 16)
    assert rel_rms(o_c, o_r) <= 1e-12 and rel_rms(s_c, s_r) <= 1e-12
    # per-head RMSNorm: every output vector has unit RMS (eps is negligible here)
    rms = np.sqrt(np.mean(o_c**2, axis=-1))
    assert np.all(np.abs(rms - 1) < 1e-6)


def test_layer_output_gate_and_norm_weight():
    x = layer_inputs(2)
    rng = np.random.default_rng(3)
    gate = rng.standard_normal((1, 40, 2, 16))
    w = rng.uniform(0.5, 1.5, 16)
    o_plain, _ = deltanet_layer(**x)
    o_gated, _ = deltanet_layer(**x, norm_weight=w, output_gate=gate)
    np.testing.assert_allclose(o_gated, o_plain * w * gate / (1 + np.exp(-gate)), rtol=1e-12)


def test_layer_composes_the_documented_steps():
    """The layer equals conv -> feature map (v: SiLU) -> l2 in kernel -> delta rule -> RMSNorm."""
    from deltanet_hw.golden import recurrent_delta_rule
    from deltanet_hw.golden.layer import silu

    x = layer_inputs(4)
    o, _ = deltanet_layer(**x, feature_map="relu", mode="recurrent", norm_eps=1e-6)
    cw = x["conv_weights"]
    q = np.maximum(short_conv(x["q"], cw["q"]), 0)
    k = np.maximum(short_conv(x["k"], cw["k"]), 0)
    v = silu(short_conv(x["v"], cw["v"]))
    beta = 1 / (1 + np.exp(-x["beta_logits"]))
    ref, _ = recurrent_delta_rule(q, k, v, beta, use_qk_l2norm_in_kernel=True)
    np.testing.assert_allclose(o, rms_norm(ref, eps=1e-6), rtol=1e-12, atol=1e-14)


def test_layer_bad_options():
    x = layer_inputs(0)
    with pytest.raises(ValueError, match="feature_map must be one of"):
        deltanet_layer(**x, feature_map="gelu")
    with pytest.raises(ValueError, match="mode must be"):
        deltanet_layer(**x, mode="parallel")
    with pytest.raises(ValueError, match="needs A_log and dt_bias"):
        deltanet_layer(**x, gate_a=np.zeros((1, 40, 2)))
    with pytest.raises(ValueError, match="conv_weights needs entries"):
        deltanet_layer(**{**x, "conv_weights": {"q": x["conv_weights"]["q"]}})
