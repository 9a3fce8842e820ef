import json

import pytest

from deltanet_hw.config import PRESETS, CoreConfig, load_config, parse_override, preset


@pytest.mark.parametrize("name", ["tiny", "ice40", "small", "ecp5"])
def test_presets_round_trip_json(name):
    cfg = preset(name)
    assert cfg.name == name
    assert CoreConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["schema"] == "deltanet-hw/core-config/1"


def test_preset_facts():
    assert preset("small").d_k == 64 and preset("small").chunk_size == 32
    assert preset("small").multipliers == 64
    assert preset("ice40").multipliers == 8  # the iCE40UP5K has 8 SB_MAC16
    assert preset("ecp5").multipliers <= 156  # LFE5U-85F MULT18X18D
    assert preset("tiny").d_k == 16
    assert preset("small").query_scale == 64**-0.5
    assert preset("small").replace(scale=0.5).query_scale == 0.5


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("d_k", 0, r"d_k must be an integer in \[1, 512\], not 0"),
        ("d_v", 1000, r"d_v must be an integer in \[1, 512\]"),
        ("chunk_size", 2.0, "chunk_size must be an integer"),
        ("heads", True, "heads must be an integer"),
        ("array_rows", 33, r"array_rows must be an integer in \[1, 32\]"),
        ("state_passes", 3, r"state_passes must be an integer in \[1, 2\]"),
        ("feature_map", "gelu", "feature_map must be one of silu, relu, elu1, identity"),
        ("qk_norm", "l1", "qk_norm must be one of"),
        ("beta_mode", "x", "beta_mode must be one of"),
        ("gated", 1, "gated must be true or false"),
        ("beta_constant", 2.5, r"beta_constant must be a number in \(0, 2\]"),
        ("scale", -1.0, "scale must be a finite number > 0"),
        ("max_tokens", 8, "chunk_size must be <= max_tokens"),
    ],
)
def test_invalid_fields_name_themselves(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        preset("tiny").replace(**{field: value})


def test_unknown_fields_and_presets():
    with pytest.raises(ValueError, match="unknown config field 'dk'"):
        preset("tiny").replace(dk=3)
    with pytest.raises(ValueError, match="unknown config field 'bogus'"):
        CoreConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="config JSON is not valid"):
        CoreConfig.from_json("{")
    with pytest.raises(ValueError, match="schema must be"):
        CoreConfig.from_dict({"schema": "other"})


def test_overrides():
    assert parse_override("d_k=32") == ("d_k", 32)
    assert parse_override("gated=true") == ("gated", True)
    assert parse_override("scale=none") == ("scale", None)
    assert parse_override("scale=0.5") == ("scale", 0.5)
    assert parse_override("beta_constant=1") == ("beta_constant", 1.0)
    assert parse_override("feature_map=relu") == ("feature_map", "relu")
    with pytest.raises(ValueError, match="d_k must be int, not 'x'"):
        parse_override("d_k=x")
    with pytest.raises(ValueError, match="gated must be true/false"):
        parse_override("gated=maybe")
    with pytest.raises(ValueError, match="must look like FIELD=VALUE"):
        parse_override("d_k")
    cfg = load_config("small", ["d_k=32", "gated=1"])
    assert (cfg.d_k, cfg.gated, cfg.d_v) == (32, True, 64)


def test_load_config_from_file(tmp_path):
    path = tmp_path / "core.json"
    path.write_text(PRESETS["ice40"].replace(heads=3).to_json())
    assert load_config(str(path)).heads == 3
    with pytest.raises(ValueError, match="does not exist"):
        load_config(str(tmp_path / "missing.json"))
