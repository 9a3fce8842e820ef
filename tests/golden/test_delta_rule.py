"""Float64 golden model: chunkwise == recurrent, closed-form behaviour, bad input."""

import numpy as np
import pytest

from deltanet_hw.golden import (
    chunk_delta_rule,
    chunk_gated_delta_rule,
    fused_recurrent_delta_rule,
    l2norm,
    recurrent_delta_rule,
)
from deltanet_hw.golden.vectors import rel_rms

TOL = 1e-12


def make(seed, B=1, T=50, H=2, K=16, V=16, gated=False, h0=False, N=None):
    rng = np.random.default_rng(seed)
    x = {
        "q": rng.standard_normal((B, T, H, K)),
        "k": rng.standard_normal((B, T, H, K)),
        "v": rng.standard_normal((B, T, H, V)),
        "beta": rng.uniform(0.05, 1.0, (B, T, H)),
    }
    if gated:
        x["g"] = -rng.uniform(0.0, 0.3, (B, T, H))
    if h0:
        x["initial_state"] = rng.standard_normal((N or B, H, K, V))
    return x


def both(x, chunk_size, **kw):
    kw = {"output_final_state": True, "use_qk_l2norm_in_kernel": True, **kw}
    return recurrent_delta_rule(**x, **kw), chunk_delta_rule(**x, chunk_size=chunk_size, **kw)


@pytest.mark.parametrize("chunk_size", [1, 2, 16, 32, 64])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("T", [1, 37, 100])
def test_chunk_equals_recurrent(chunk_size, gated, T):
    x = make(chunk_size * 7 + T, B=2, T=T, gated=gated, h0=True)
    (o_r, s_r), (o_c, s_c) = both(x, chunk_size)
    assert o_c.shape == (2, T, 2, 16) and s_c.shape == (2, 2, 16, 16)
    assert rel_rms(o_c, o_r) <= TOL
    assert rel_rms(s_c, s_r) <= TOL


@pytest.mark.parametrize("gated", [False, True])
def test_chunk_equals_recurrent_k_ne_v(gated):
    x = make(3, B=2, T=45, H=3, K=32, V=16, gated=gated, h0=True)
    (o_r, s_r), (o_c, s_c) = both(x, 16)
    assert o_c.shape == (2, 45, 3, 16) and s_c.shape == (2, 3, 32, 16)
    assert rel_rms(o_c, o_r) <= TOL and rel_rms(s_c, s_r) <= TOL


def test_value_heads_share_key_heads():
    """GVA: 4 value heads on 2 key heads equals repeating the key heads by hand."""
    rng = np.random.default_rng(5)
    x = make(5, T=20, H=2)
    x["v"] = rng.standard_normal((1, 20, 4, 16))
    x["beta"] = rng.uniform(0, 1, (1, 20, 4))
    o, _ = chunk_delta_rule(**x, chunk_size=8, use_qk_l2norm_in_kernel=True)
    rep = dict(x, q=np.repeat(x["q"], 2, axis=2), k=np.repeat(x["k"], 2, axis=2))
    o_rep, _ = recurrent_delta_rule(**rep, use_qk_l2norm_in_kernel=True)
    assert rel_rms(o, o_rep) <= TOL


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
def test_varlen_matches_separate_runs(gated, chunk_size):
    cu = np.array([0, 5, 69, 139, 140])
    x = make(11, T=140, gated=gated, h0=True, N=4)
    (o_r, s_r), (o_c, s_c) = both(x, chunk_size, cu_seqlens=cu)
    assert rel_rms(o_c, o_r) <= TOL and rel_rms(s_c, s_r) <= TOL
    # each sequence alone, from its own initial state, gives the same numbers
    for n in range(4):
        s, e = cu[n], cu[n + 1]
        part = {key: val[:, s:e] for key, val in x.items() if key != "initial_state"}
        o_n, s_n = recurrent_delta_rule(
            **part,
            initial_state=x["initial_state"][n : n + 1],
            output_final_state=True,
            use_qk_l2norm_in_kernel=True,
        )
        np.testing.assert_allclose(o_c[:, s:e], o_n, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s_c[n], s_n[0], rtol=0, atol=1e-12)


def test_varlen_state_does_not_cross_boundaries():
    x = make(2, T=30, h0=False)
    cu = np.array([0, 10, 30])
    o_var, _ = recurrent_delta_rule(**x, cu_seqlens=cu, use_qk_l2norm_in_kernel=True)
    o_all, _ = recurrent_delta_rule(**x, use_qk_l2norm_in_kernel=True)
    np.testing.assert_array_equal(o_var[:, :10], o_all[:, :10])
    assert rel_rms(o_var[:, 10:], o_all[:, 10:]) > 0.05  # the second sequence started fresh


def test_fla_entry_points():
    x = make(4, T=40, gated=True, h0=True)
    ref, ht = recurrent_delta_rule(**x, output_final_state=True, use_qk_l2norm_in_kernel=True)
    o, ht2 = chunk_gated_delta_rule(
        x["q"],
        x["k"],
        x["v"],
        x["g"],
        x["beta"],
        initial_state=x["initial_state"],
        output_final_state=True,
        use_qk_l2norm_in_kernel=True,
        chunk_size=16,
    )
    assert rel_rms(o, ref) <= TOL and rel_rms(ht2, ht) <= TOL
    o1, none = fused_recurrent_delta_rule(x["q"], x["k"], x["v"], use_qk_l2norm_in_kernel=True)
    o2, _ = recurrent_delta_rule(
        x["q"], x["k"], x["v"], np.ones((1, 40, 2)), use_qk_l2norm_in_kernel=True
    )
    assert none is None
    np.testing.assert_array_equal(o1, o2)


def test_output_final_state_false_returns_none():
    _, ht = chunk_delta_rule(**make(0, T=5), use_qk_l2norm_in_kernel=True)
    assert ht is None


def test_default_scale_is_inverse_sqrt_k():
    x = make(8, T=12, K=16)
    o_default, _ = recurrent_delta_rule(**x, use_qk_l2norm_in_kernel=True)
    o_explicit, _ = recurrent_delta_rule(**x, scale=0.25, use_qk_l2norm_in_kernel=True)
    np.testing.assert_array_equal(o_default, o_explicit)
    o_other, _ = recurrent_delta_rule(**x, scale=0.1, use_qk_l2norm_in_kernel=True)
    np.testing.assert_allclose(o_other, o_default * 0.4, rtol=1e-12, atol=0)  # scale on q/o only


# -- closed-form behaviour -------------------------------------------------------------------


def test_beta_one_write_is_exact_recall():
    """With beta = 1 and a unit key, S^T k = v right after the write, whatever S held."""
    rng = np.random.default_rng(0)
    K, V = 8, 5
    k = l2norm(rng.standard_normal(K), eps=0.0)
    v = rng.standard_normal(V)
    h0 = rng.standard_normal((1, 1, K, V))
    _, S = recurrent_delta_rule(
        k[None, None, None],
        k[None, None, None],
        v[None, None, None],
        np.ones((1, 1, 1)),
        initial_state=h0,
        output_final_state=True,
        scale=1.0,
    )
    np.testing.assert_allclose(S[0, 0].T @ k, v, rtol=0, atol=1e-14)


@pytest.mark.parametrize("form", ["recurrent", "chunk"])
def test_orthonormal_keys_store_independent_associations(form):
    rng = np.random.default_rng(1)
    K, V, n = 16, 8, 6
    keys = np.linalg.qr(rng.standard_normal((K, K)))[0][:, :n].T  # n orthonormal keys
    vals = rng.standard_normal((n, V))
    T = 2 * n  # write every pair twice: the delta rule corrects, additive attention adds
    k = np.concatenate([keys, keys])[None, :, None]
    v = np.concatenate([vals, vals])[None, :, None]
    beta = np.ones((1, T, 1))
    fn = recurrent_delta_rule if form == "recurrent" else chunk_delta_rule
    _, S = fn(k, k, v, beta, output_final_state=True, scale=1.0)
    np.testing.assert_allclose(keys @ S[0, 0], vals, rtol=0, atol=1e-13)
    # plain additive linear attention (S += k v^T) mixes repeated writes: retrieval is doubled
    S_additive = np.einsum("tk,tv->kv", k[0, :, 0], v[0, :, 0])
    assert np.abs(keys @ S_additive - vals).max() > 0.5


def test_correlated_keys_delta_rule_beats_additive():
    """Non-orthogonal keys: the delta rule retrieves the latest value of a key exactly (beta=1)."""
    rng = np.random.default_rng(2)
    K, V = 8, 4
    base = rng.standard_normal(K)
    keys = l2norm(base + 0.3 * rng.standard_normal((3, K)), eps=0.0)
    vals = rng.standard_normal((3, V))
    k = keys[None, :, None]
    _, S = recurrent_delta_rule(
        k, k, vals[None, :, None], np.ones((1, 3, 1)), output_final_state=True
    )
    np.testing.assert_allclose(keys[-1] @ S[0, 0], vals[-1], atol=1e-13)
    additive = keys[-1] @ np.einsum("tk,tv->kv", keys, vals)
    assert np.abs(additive - vals[-1]).max() > 0.1


def test_unnormalised_keys_diverge_and_default_refuses():
    rng = np.random.default_rng(3)
    x = {
        "q": rng.standard_normal((1, 40, 1, 64)),
        "k": rng.standard_normal((1, 40, 1, 64)),
        "v": rng.standard_normal((1, 40, 1, 64)),
        "beta": np.full((1, 40, 1), 0.75),
    }
    with pytest.raises(ValueError, match=r"beta \* \|\|k\|\|\^2 .* diverges.*L2-normalise"):
        recurrent_delta_rule(**x)
    with pytest.raises(ValueError, match="diverges"):
        chunk_delta_rule(**x)
    with pytest.warns(RuntimeWarning, match="diverges"):
        _, S = recurrent_delta_rule(**x, stability="warn", output_final_state=True)
    _, S = recurrent_delta_rule(**x, stability="ignore", output_final_state=True)
    assert not np.all(np.isfinite(S)) or np.abs(S).max() > 1e10  # it really blows up
    _, S_norm = recurrent_delta_rule(**x, use_qk_l2norm_in_kernel=True, output_final_state=True)
    assert np.abs(S_norm).max() < 100  # normalised keys keep it bounded


def test_negative_eigenvalue_beta_is_allowed_up_to_two():
    x = make(6, T=30)
    x["beta"] = np.full((1, 30, 2), 1.99)
    (o_r, s_r), (o_c, s_c) = both(x, 8)
    assert rel_rms(o_c, o_r) <= 1e-11 and rel_rms(s_c, s_r) <= 1e-11


# -- bad input -------------------------------------------------------------------------------

GOOD = make(0, T=8)


@pytest.mark.parametrize("fn", [recurrent_delta_rule, chunk_delta_rule])
@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"q": np.zeros((1, 8, 2))}, "q must have 4 dimensions"),
        ({"k": np.zeros((1, 8, 2, 15))}, "q and k must have the same shape"),
        ({"v": np.zeros((1, 7, 2, 16))}, "v must have shape"),
        ({"v": np.zeros((1, 8, 3, 16))}, r"v heads \(3\) must be a multiple"),
        ({"beta": np.zeros((1, 8, 3))}, "beta must have shape"),
        ({"g": np.zeros((1, 8))}, "g must have 3 dimensions"),
        ({"g": np.full((1, 8, 2), 0.1)}, "g is a log decay and must be <= 0"),
        ({"q": np.zeros((1, 8, 2, 16), dtype=np.int32)}, "q must have a floating-point dtype"),
        ({"beta": np.zeros((1, 8, 2), dtype=complex)}, "beta must have a floating-point dtype"),
        ({"k": np.full((1, 8, 2, 16), np.nan)}, "k contains NaN or Inf"),
        ({"v": np.full((1, 8, 2, 16), np.inf)}, "v contains NaN or Inf"),
        ({"beta": np.full((1, 8, 2), np.nan)}, "beta contains NaN or Inf"),
        ({"initial_state": np.zeros((1, 2, 16, 15))}, "initial_state must have shape"),
        ({"initial_state": np.full((1, 2, 16, 16), np.inf)}, "initial_state contains NaN"),
        ({"scale": float("nan")}, "scale must be finite"),
        ({"scale": "1"}, "scale must be a number"),
        ({"cu_seqlens": np.array([0, 3, 7])}, r"cu_seqlens must rise from 0 to T = 8"),
        ({"cu_seqlens": np.array([0, 5, 3, 8])}, "cu_seqlens must rise"),
        ({"cu_seqlens": np.array([0.0, 8.0])}, "cu_seqlens must be a 1-D integer array"),
        ({"stability": "maybe"}, "stability must be one of raise, warn, ignore"),
    ],
)
def test_bad_input_is_refused(fn, change, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn(**{**GOOD, **change}, use_qk_l2norm_in_kernel=True)


def test_varlen_needs_batch_one():
    x = make(0, B=2, T=8)
    with pytest.raises(ValueError, match="cu_seqlens needs batch size B = 1"):
        chunk_delta_rule(**x, cu_seqlens=np.array([0, 8]), use_qk_l2norm_in_kernel=True)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "64"])
def test_bad_chunk_size(bad):
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        chunk_delta_rule(**GOOD, chunk_size=bad, use_qk_l2norm_in_kernel=True)
