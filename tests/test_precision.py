"""Precision configuration: types and reuse factors from the command line and YAML files."""

from __future__ import annotations

import pytest

from hwprune.errors import ConfigError
from hwprune.fixed import FixedType
from hwprune.precision import LayerPrecision, PrecisionConfig, parse_reuse_factor, parse_type


@pytest.mark.parametrize("text", ["ap_fixed<16>", "float", "ap_fixed<0,0>", "ap_fixed<16,6,AP_FOO>", "ap_fixed<99,6>", ""])
def test_bad_types_are_config_errors_naming_the_option(text):
    with pytest.raises(ConfigError, match="--precision"):
        parse_type(text, "--precision")


@pytest.mark.parametrize("value", [0, -1, "two", 1.5])
def test_bad_reuse_factors(value):
    with pytest.raises(ConfigError):
        parse_reuse_factor(value)


@pytest.mark.parametrize("field", ["reuse_factor", "table_size", "weight_width"])
@pytest.mark.parametrize("value", [0, -2])
def test_bad_counts_from_code_are_refused_not_defaulted(field, value):
    """LayerPrecision(reuse_factor=0) used to resolve as RF 1 (`0 or 1`): refused, naming the field."""
    with pytest.raises(ConfigError, match=field):
        LayerPrecision(**{field: value})
    assert PrecisionConfig(layer_name={"fc1": LayerPrecision(**{field: 3})}).resolve("fc1", "Dense") is not None


def test_yaml_levels_resolve_most_specific_first(tmp_path):
    p = tmp_path / "prec.yaml"
    p.write_text("model: {result: 'ap_fixed<14,5>', reuse_factor: 2}\n"
                 "layer_type: {Dense: {reuse_factor: 4}}\n"
                 "layer_name: {fc1: {result: 'ap_fixed<10,4>'}}\n")
    cfg = PrecisionConfig.from_yaml(p)
    fc1, fc2 = cfg.resolve("fc1", "Dense"), cfg.resolve("fc2", "Dense")
    assert fc1.result == FixedType(10, 4) and fc1.reuse_factor == 4
    assert fc2.result == FixedType(14, 5) and fc2.weight_width == 14
    assert cfg.resolve("act", "Activation").reuse_factor == 2
    assert PrecisionConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("text,match", [("model: {reslt: x}", "unknown key"), ("model: [1, 2", "not valid YAML"),
                                        ("layer_name: {fc1: {table_size: 100}}", "power of two")])
def test_bad_yaml_is_refused_with_the_file_named(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        PrecisionConfig.from_yaml(p)
    assert str(p) in str(e.value)
