"""Core configuration: everything a DeltaNet core is, validated in one place.

A :class:`CoreConfig` decides the head dimensions, the chunk size, the array shape and the layer
options (feature map, normalisation, beta mode, gating). Every artifact the toolkit writes (golden
runs, Verilog, simulations, reports) records the exact config through :meth:`CoreConfig.to_json`.

Named presets (ARCHITECTURE.md section 5):

``tiny``
    d_k = d_v = 16, chunk 16, 4x4 array: fast unit and CI simulations.
``ice40``
    d_k = d_v = 16, chunk 16, 2x4 array, all formats 16 bits: the 8 SB_MAC16 of an iCEBreaker
    (iCE40UP5K), one per processing element.
``small``
    d_k = d_v = 64, chunk 32, 8x8 array, 4 heads: the benchmark configuration.
``ecp5``
    d_k = d_v = 128 (fla's head size), chunk 64 (fla's), 4x8 array, the state in two passes, one
    head: the largest core that routes on a ULX3S-85F. The 32-bit state meets its 18-bit data
    operand on one MULT18X18D per processing element in two array steps (``state_passes=2``):
    the array takes 32 of the 156, the solver row 8, BetaPhi and the loader 16. The 8x8 array
    (128 or, in two passes, 64 MULT18X18D) places but its wiring congests the LFE5U-85F past
    what nextpnr routes in hours (README.md, "The core"). The chunk buffers of one head (two
    halves) and its state fill 191 of the 208 DP16KD block RAMs, so a second head does not fit:
    a layer with more heads runs them as separate sequences, swapping each head's state through
    the state port.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .qformat import QFormat

__all__ = [
    "BETA_MODES",
    "FEATURE_MAPS",
    "FORMAT_FIELDS",
    "PRESETS",
    "QK_NORMS",
    "CoreConfig",
    "default_formats",
    "load_config",
    "parse_override",
    "preset",
]

FEATURE_MAPS = ("silu", "relu", "elu1", "identity")
QK_NORMS = ("l2", "sum")
BETA_MODES = ("sigmoid", "constant", "neg_eigval")

# Allowed ranges of the integer fields, inclusive: the single table validation reads.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "d_k": (1, 512),
    "d_v": (1, 512),
    "chunk_size": (1, 256),
    "heads": (1, 64),
    "max_tokens": (1, 1 << 24),
    "array_rows": (1, 32),
    "array_cols": (1, 32),
    "conv_size": (1, 8),
    "acc_bits": (16, 62),
    "lut_bits": (2, 12),
    "rsqrt_newton": (0, 3),
    "acc_part_bits": (4, 62),
    "state_passes": (1, 2),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "feature_map": FEATURE_MAPS,
    "qk_norm": QK_NORMS,
    "beta_mode": BETA_MODES,
}
_SCHEMA = "deltanet-hw/core-config/1"

# Integer bits (not counting the sign) of every stored quantity: the ranges the algorithm needs with
# L2-normalised keys, beta <= 2 and values of order 1 (ARCHITECTURE.md section 3). Widths vary by
# preset; these ranges do not. Where each format is applied: golden/fixed.py and golden/program.py.
FORMAT_FIELDS: dict[str, tuple[int, str, str]] = {
    # field: (int_bits, width class, what it holds)
    "fmt_input": (4, "io", "raw q, k, v and beta logits on the token stream"),
    "fmt_gate": (4, "data", "log decay g <= 0 on the token stream (gated; below -16 saturates)"),
    "fmt_conv": (1, "data", "short-convolution weights"),
    "fmt_act": (4, "data", "q, k after the short convolution and the feature map"),
    "fmt_qk": (1, "data", "normalised k and scaled normalised q (and their decayed forms)"),
    "fmt_v": (3, "data", "v after the short convolution and SiLU, and beta v"),
    "fmt_beta": (1, "data", "beta (and beta times decays)"),
    "fmt_decay": (1, "data", "decays exp(G_i - G_j), exp(G), alpha (gated)"),
    "fmt_a": (1, "data", "A = strictly-lower(beta K K^T (x Gamma))"),
    "fmt_attn": (0, "data", "causal Q K^T (x Gamma)"),
    "fmt_t": (2, "data", "T = (I + A)^-1"),
    "fmt_w": (1, "data", "W = T (beta exp(G) K)"),
    "fmt_u": (3, "data", "U = T (beta V)"),
    "fmt_vnew": (3, "data", "pseudo-values V' = U - W S"),
    "fmt_o": (0, "io", "outputs o on the token stream"),
    "fmt_state": (3, "state", "the K x V state S"),
}


def default_formats(
    data_bits: int = 16, io_bits: int = 16, state_bits: int = 32, rounding: str = "half_even"
) -> dict[str, QFormat]:
    """Every format of :data:`FORMAT_FIELDS` at the given word widths (sign included)."""
    widths = {"io": io_bits, "data": data_bits, "state": state_bits}
    out = {}
    for field, (int_bits, cls, _) in FORMAT_FIELDS.items():
        frac = widths[cls] - 1 - int_bits
        if frac < 0:
            raise ValueError(
                f"{cls} width {widths[cls]} is too narrow for {field} "
                f"({int_bits} integer bits and a sign)"
            )
        out[field] = QFormat(int_bits, frac, rounding=rounding)
    return out


_DEFAULT_FORMATS = default_formats()


@dataclass(frozen=True, kw_only=True)
class CoreConfig:
    """Parameters of one DeltaNet core.

    Parameters
    ----------
    name : str
        Label recorded in artifacts (a preset name, or ``"custom"``).
    d_k, d_v : int
        Key and value head dimensions; the state of one head is d_k x d_v ("key-major", as fla).
    chunk_size : int
        Tokens per chunk of the chunkwise (WY) algorithm.
    heads : int
        Number of delta-rule heads the core processes (interleaved).
    max_tokens : int
        Longest sequence the core accepts (the bound of its length register).
    array_rows, array_cols : int
        Shape of the systolic MAC array (R x C multipliers).
    feature_map : str
        Activation applied to q and k: ``silu``, ``relu``, ``elu1`` (1 + ELU) or ``identity``.
    qk_norm : str
        ``l2`` (x / sqrt(sum x^2 + 1e-6), as fla) or ``sum`` (x / sum x).
    short_conv : bool
        Causal depthwise short convolution on q, k, v before the feature map.
    conv_size : int
        Kernel size of that convolution (fla: 4).
    beta_mode : str
        ``sigmoid`` (beta = sigmoid(logit)), ``constant`` (beta = beta_constant) or
        ``neg_eigval`` (beta = 2 sigmoid(logit), allows negative eigenvalues).
    beta_constant : float
        The beta used in ``constant`` mode, in (0, 2].
    gated : bool
        Gated DeltaNet: the state decays by alpha_t = exp(g_t) before each write.
    scale : float or None
        Query scale; ``None`` means d_k ** -0.5.
    fmt_input, ..., fmt_state : QFormat
        Number format of every stored quantity (:data:`FORMAT_FIELDS` says what each holds);
        :func:`default_formats` builds a consistent set from three word widths.
    acc_bits : int
        Width of the exact accumulators; every product of the chunk program must fit (checked).
    lut_bits : int
        Nonlinear functions use tables of 2**lut_bits segments with linear interpolation.
    rsqrt_newton : int
        Newton steps refining the reciprocal square root of the L2 normalisation.
    acc_part_bits : int
        Longest carry chain of the MAC array's carry-save accumulators (shorter parts raise Fmax
        on iCE40; ECP5 carry chains are fast, so its presets use longer parts and fewer
        registers). Changes timing only, never a result bit.
    state_passes : int
        How the MAC array multiplies by a state word wider than one hard multiplier (18 bits):
        ``1``, two multipliers per processing element at once; ``2``, one multiplier in two
        array steps (the low 17 bits, then the high bits weighted 2**17): half the multipliers
        (and half the wires into them), twice the steps of the products that read the state.
        Changes timing and size only, never a result bit.
    """

    name: str = "custom"
    d_k: int = 16
    d_v: int = 16
    chunk_size: int = 16
    heads: int = 2
    max_tokens: int = 4096
    array_rows: int = 4
    array_cols: int = 4
    feature_map: str = "silu"
    qk_norm: str = "l2"
    short_conv: bool = True
    conv_size: int = 4
    beta_mode: str = "sigmoid"
    beta_constant: float = 1.0
    gated: bool = False
    scale: float | None = None
    fmt_input: QFormat = _DEFAULT_FORMATS["fmt_input"]
    fmt_gate: QFormat = _DEFAULT_FORMATS["fmt_gate"]
    fmt_conv: QFormat = _DEFAULT_FORMATS["fmt_conv"]
    fmt_act: QFormat = _DEFAULT_FORMATS["fmt_act"]
    fmt_qk: QFormat = _DEFAULT_FORMATS["fmt_qk"]
    fmt_v: QFormat = _DEFAULT_FORMATS["fmt_v"]
    fmt_beta: QFormat = _DEFAULT_FORMATS["fmt_beta"]
    fmt_decay: QFormat = _DEFAULT_FORMATS["fmt_decay"]
    fmt_a: QFormat = _DEFAULT_FORMATS["fmt_a"]
    fmt_attn: QFormat = _DEFAULT_FORMATS["fmt_attn"]
    fmt_t: QFormat = _DEFAULT_FORMATS["fmt_t"]
    fmt_w: QFormat = _DEFAULT_FORMATS["fmt_w"]
    fmt_u: QFormat = _DEFAULT_FORMATS["fmt_u"]
    fmt_vnew: QFormat = _DEFAULT_FORMATS["fmt_vnew"]
    fmt_o: QFormat = _DEFAULT_FORMATS["fmt_o"]
    fmt_state: QFormat = _DEFAULT_FORMATS["fmt_state"]
    acc_bits: int = 62
    lut_bits: int = 8
    rsqrt_newton: int = 1
    acc_part_bits: int = 14
    state_passes: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, not {self.name!r}")
        for field, (lo, hi) in _INT_RANGES.items():
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{field} must be an integer in [{lo}, {hi}], not {value!r}")
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"{field} must be one of {', '.join(allowed)}; not {value!r}")
        for field in ("short_conv", "gated"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be true or false, not {getattr(self, field)!r}")
        if not _is_real(self.beta_constant) or not 0.0 < self.beta_constant <= 2.0:
            raise ValueError(
                f"beta_constant must be a number in (0, 2], not {self.beta_constant!r}"
            )
        if self.scale is not None and (
            not _is_real(self.scale) or not math.isfinite(self.scale) or self.scale <= 0
        ):
            raise ValueError(f"scale must be a finite number > 0 or null, not {self.scale!r}")
        if self.chunk_size > self.max_tokens:
            raise ValueError(
                f"chunk_size must be <= max_tokens ({self.max_tokens}), not {self.chunk_size}"
            )
        for field in FORMAT_FIELDS:
            if not isinstance(getattr(self, field), QFormat):
                raise ValueError(f"{field} must be a QFormat, not {getattr(self, field)!r}")
        from .golden.program import check_accumulators  # late import: golden imports config

        check_accumulators(self)

    # -- derived quantities ------------------------------------------------------------------
    @property
    def query_scale(self) -> float:
        """The scale applied to q: ``scale`` or d_k ** -0.5."""
        return self.d_k**-0.5 if self.scale is None else float(self.scale)

    @property
    def multipliers(self) -> int:
        """Multipliers in the MAC array (R x C)."""
        return self.array_rows * self.array_cols

    # -- construction ------------------------------------------------------------------------
    def replace(self, **overrides: Any) -> CoreConfig:
        """Return a copy with some fields changed (validated again)."""
        unknown = sorted(set(overrides) - set(field_names()))
        if unknown:
            raise ValueError(
                f"unknown config field {unknown[0]!r}; fields: {', '.join(field_names())}"
            )
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update({k: str(data[k]) for k in FORMAT_FIELDS})
        return {"schema": _SCHEMA, **data}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoreConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a JSON object, not {type(data).__name__}")
        data = dict(data)
        schema = data.pop("schema", _SCHEMA)
        if schema != _SCHEMA:
            raise ValueError(f"schema must be {_SCHEMA!r}, not {schema!r}")
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise ValueError(
                f"unknown config field {unknown[0]!r}; fields: {', '.join(field_names())}"
            )
        for key in FORMAT_FIELDS:
            if isinstance(data.get(key), str):
                try:
                    data[key] = QFormat.parse(data[key])
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> CoreConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config JSON is not valid: {exc}") from None
        return cls.from_dict(data)


def _is_real(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(CoreConfig))


# ECP5 multipliers are 18x18 (MULT18X18D): 18-bit data; the 32-bit state takes two per product.
_ECP5_FORMATS = default_formats(data_bits=18, io_bits=16, state_bits=32)
# iCE40 multipliers are 16x16 (SB_MAC16): every operand, the state too, is 16 bits, so each
# product is one SB_MAC16 (the accuracy study measures what this costs).
_ICE40_FORMATS = default_formats(data_bits=16, io_bits=16, state_bits=16)
PRESETS: dict[str, CoreConfig] = {
    "tiny": CoreConfig(
        name="tiny",
        d_k=16,
        d_v=16,
        chunk_size=16,
        heads=2,
        max_tokens=1 << 20,
        array_rows=4,
        array_cols=4,
        acc_bits=53,
    ),
    "ice40": CoreConfig(
        name="ice40",
        d_k=16,
        d_v=16,
        chunk_size=16,
        heads=2,
        max_tokens=4096,
        array_rows=2,
        array_cols=4,
        acc_bits=38,
        **_ICE40_FORMATS,
    ),
    "small": CoreConfig(
        name="small",
        d_k=64,
        d_v=64,
        chunk_size=32,
        heads=4,
        max_tokens=65536,
        array_rows=8,
        array_cols=8,
        acc_bits=57,
        acc_part_bits=30,
        **_ECP5_FORMATS,
    ),
    "ecp5": CoreConfig(
        name="ecp5",
        d_k=128,
        d_v=128,
        chunk_size=64,
        heads=1,
        max_tokens=65536,
        array_rows=4,
        array_cols=8,
        acc_bits=58,
        acc_part_bits=30,
        state_passes=2,
        **_ECP5_FORMATS,
    ),
}


def preset(name: str) -> CoreConfig:
    """Return the named preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``FIELD=VALUE`` (a CLI ``--set``) into a field name and a typed value."""
    field, sep, raw = text.partition("=")
    field = field.strip()
    if not sep:
        raise ValueError(f"override {text!r} must look like FIELD=VALUE")
    if field not in field_names() or field == "name":
        raise ValueError(f"unknown config field {field!r}; fields: {', '.join(field_names()[1:])}")
    raw = raw.strip()
    default = getattr(CoreConfig(), field)
    if field == "scale" and raw.lower() in ("none", "null", ""):
        return field, None
    if field in FORMAT_FIELDS:
        try:
            return field, QFormat.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return field, raw.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return field, int(raw, 0)
        if isinstance(default, float) or field == "scale":
            return field, float(raw)
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default or 0.0).__name__
        raise ValueError(f"{field} must be {kind}, not {raw!r}") from None
    return field, raw


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> CoreConfig:
    """Load a preset name or a JSON file path, then apply ``FIELD=VALUE`` overrides."""
    if spec in PRESETS:
        cfg = PRESETS[spec]
    elif spec.endswith(".json") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"config file {spec!r} does not exist")
        cfg = CoreConfig.from_json(path.read_text())
    else:
        raise ValueError(f"unknown preset {spec!r}; presets: {', '.join(PRESETS)} or a FILE.json")
    changes = dict(parse_override(o) for o in overrides)
    return cfg.replace(**changes) if changes else cfg
