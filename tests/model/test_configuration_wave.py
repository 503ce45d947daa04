"""Tests of `WaveConfig`: defaults, validation with clear messages, round trips and the presets in `configuration/`."""

import json
from pathlib import Path

import pytest
from huggingface_hub.errors import StrictDataclassError

from modeling_wave import WaveConfig, WaveForSequenceClassification, configuration_wave
from modeling_wave.configuration_wave import WAVE_AUTO_MAP
from transformers import AutoConfig, PreTrainedConfig
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESETS = {
    "wave-modulation-base": "modulation",
    "wave-interference-base": "interference",
}

# Values different from every default, all valid together.
NON_DEFAULTS = dict(
    vocab_size=120, hidden_size=48, num_hidden_layers=3, intermediate_size=50, hidden_act="relu",
    hidden_dropout_prob=0.25, classifier_dropout=0.5, max_position_embeddings=64,
    position_embedding_type="sinusoidal", wave_mode="interference", wave_readout="magnitude", pooling="cls",
    layer_norm_eps=1e-5, wave_eps=1e-4, initializer_range=0.05, pad_token_id=3, num_labels=4,
    problem_type="multi_label_classification",
)  # fmt: skip


def test_defaults_are_the_papers_model():
    config = WaveConfig()
    assert isinstance(config, PreTrainedConfig)
    assert config.model_type == WaveConfig.model_type == "wave"
    expected = dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=1, intermediate_size=3072, hidden_act="gelu",
        hidden_dropout_prob=0.1, classifier_dropout=None, max_position_embeddings=512,
        position_embedding_type="learned", wave_mode="modulation", wave_readout="real_imag", pooling="mean",
        layer_norm_eps=1e-12, wave_eps=1e-6, initializer_range=0.02, pad_token_id=0,
    )  # fmt: skip
    assert {name: getattr(config, name) for name in expected} == expected
    # what PreTrainedConfig gives
    assert config.num_labels == 2 and config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert config.problem_type is None


def test_pretrained_config_fields():
    id2label = {0: "neg", 1: "neutral", 2: "pos"}
    config = WaveConfig(id2label=id2label, label2id={v: k for k, v in id2label.items()}, problem_type="regression")
    assert config.num_labels == 3
    assert config.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    assert config.problem_type == "regression"
    with pytest.raises(ValueError, match="problem_type"):
        WaveConfig(problem_type="ranking")
    assert WaveConfig(num_labels=5).id2label[4] == "LABEL_4"


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("wave_mode", "superposition", ["'modulation'", "'interference'"]),
        ("wave_mode", None, ["'modulation'", "'interference'"]),
        ("wave_readout", "phase", ["'real_imag'", "'real'", "'magnitude'"]),
        ("pooling", "max", ["'mean'", "'cls'"]),
        ("wave_implementation", "sdpa", ["'fused'", "'eager'"]),
        ("position_embedding_type", "rotary", ["'learned'", "'sinusoidal'", "'none'"]),
        ("position_embedding_type", "absolute", ["'learned'", "'sinusoidal'", "'none'"]),
        ("hidden_act", "swishy", ["'gelu'", "'relu'"]),
        ("vocab_size", 0, ["positive integer"]),
        ("hidden_size", -8, ["positive integer"]),
        ("hidden_size", 32.0, ["expected int"]),  # type checks: strict's message
        ("num_hidden_layers", -1, [">= 0"]),
        ("num_hidden_layers", True, ["expected int"]),
        ("num_hidden_layers", 1.5, ["expected int"]),
        ("intermediate_size", -1, [">= 0"]),
        ("intermediate_size", 2.5, ["expected int"]),
        ("max_position_embeddings", -1, ["positive integer"]),
        ("hidden_dropout_prob", 1.0, ["[0, 1)"]),
        ("hidden_dropout_prob", -0.1, ["[0, 1)"]),
        ("classifier_dropout", 1.5, ["[0, 1)"]),
        ("layer_norm_eps", 0.0, ["> 0"]),
        ("wave_eps", -1e-6, ["> 0"]),
        ("initializer_range", 0, ["> 0"]),
        ("pad_token_id", 30522, ["[0, vocab_size=30522)"]),
        ("pad_token_id", -1, ["[0, vocab_size=30522)"]),
        ("problem_type", "ranking", ["'regression'", "'multi_label_classification'"]),
        ("is_decoder", "yes", ["expected bool"]),
        ("use_cache", 1, ["expected bool"]),
    ],
)
def test_bad_values_raise_a_clear_error(field, value, allowed):
    with pytest.raises(ValueError) as error:
        WaveConfig(**{field: value})
    assert isinstance(error.value, StrictDataclassError)  # raised by `@strict`, as a ValueError
    message = str(error.value)
    assert f"`{field}`" in message or f"Field '{field}'" in message  # ours, or strict's type and `Literal` checks
    for text in allowed:
        assert text in message
    assert repr(value) in message or str(value) in message


def test_modulation_with_magnitude_readout_is_refused():
    with pytest.raises(ValueError, match=r"wave_readout=\"magnitude\".*wave_mode=\"modulation\".*\"real_imag\""):
        WaveConfig(wave_mode="modulation", wave_readout="magnitude")
    assert WaveConfig(wave_mode="interference", wave_readout="magnitude").wave_readout == "magnitude"


def test_interference_with_real_readout_warns():
    logger = logging.get_logger(configuration_wave.__name__)
    logger.warning_once.cache_clear()  # the warning is shown once per process
    with CaptureLogger(logger) as captured:
        WaveConfig(wave_mode="interference", wave_readout="real")
    assert "no token sees any other token" in captured.out


def test_fields_are_checked_when_set_and_by_check_wave_fields(tmp_path):
    config = WaveConfig()
    with pytest.raises(ValueError, match="`hidden_size` must be a positive integer, got 0"):
        config.hidden_size = 0
    with pytest.raises(ValueError, match="Field 'pooling' expected one of"):
        config.update({"pooling": "max"})
    with pytest.raises(ValueError, match="`num_hidden_layers` must be >= 0 .*got -2"):
        config.update_from_string("num_hidden_layers=-2")
    assert (config.hidden_size, config.pooling, config.num_hidden_layers) == (768, "mean", 1)  # refused: not set
    config.update({"wave_readout": "magnitude"})  # fields are checked one by one: valid by itself
    with pytest.raises(ValueError, match=r"wave_readout=\"magnitude\".*wave_mode=\"modulation\""):
        config.check_wave_fields()  # the rules between fields
    with pytest.raises(ValueError, match=r"wave_readout=\"magnitude\""):
        config.save_pretrained(tmp_path)  # `save_pretrained` runs them too, before writing config.json
    assert not (tmp_path / "config.json").exists()
    config.update_from_string("wave_mode=interference,hidden_size=64")
    config.check_wave_fields()
    config.ngram_sizes = [2, 3]
    config.ngram_sizes.append(7)  # changed in place, past `__setattr__`
    with pytest.raises(ValueError, match=r"`ngram_sizes` must be .* got \[2, 3, 7\]"):
        config.check_wave_fields()


def test_valid_values_are_accepted():
    for mode, readout in [("modulation", "real_imag"), ("modulation", "real"), ("interference", "magnitude")]:
        for pooling in ("mean", "cls"):
            for position in ("learned", "sinusoidal", "none"):
                kwargs = dict(wave_mode=mode, wave_readout=readout, pooling=pooling, position_embedding_type=position)
                config = WaveConfig(**kwargs)
                assert (config.wave_mode, config.wave_readout, config.pooling) == (mode, readout, pooling)
    assert WaveConfig(hidden_dropout_prob=0, classifier_dropout=0.0, pad_token_id=None).pad_token_id is None
    assert WaveConfig(intermediate_size=0).intermediate_size == 0  # no feed-forward block


def test_save_and_load_round_trip(tmp_path):
    config = WaveConfig(**NON_DEFAULTS)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "wave"
    assert saved["auto_map"] == WAVE_AUTO_MAP
    for loaded in (WaveConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert type(loaded) is WaveConfig
        for name, value in NON_DEFAULTS.items():
            assert getattr(loaded, name) == value, name
        assert loaded.id2label == config.id2label
        loaded_dict, config_dict = loaded.to_dict(), config.to_dict()
        for as_dict in (loaded_dict, config_dict):
            as_dict.pop("_name_or_path", None)  # where it was loaded from (set by AutoConfig only)
        assert loaded_dict == config_dict


def test_to_dict_round_trip():
    config = WaveConfig(**NON_DEFAULTS)
    as_dict = config.to_dict()
    assert as_dict["model_type"] == "wave"
    for name, value in NON_DEFAULTS.items():
        if name != "num_labels":  # stored as id2label
            assert as_dict[name] == value, name
    again = WaveConfig.from_dict(as_dict)
    assert again.to_dict() == as_dict
    assert WaveConfig.from_dict(json.loads(config.to_json_string())).to_dict() == as_dict


def test_loading_a_bad_config_file_raises(tmp_path):
    WaveConfig().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "wave_mode": "convolution"}))
    with pytest.raises(ValueError, match="wave_mode"):
        WaveConfig.from_pretrained(tmp_path)


def test_loading_an_old_config_file(tmp_path):
    """A config.json as an older Transformers wrote it: a few fields, integer dropout, keys this version drops."""
    old = {"model_type": "wave", "hidden_size": 64, "hidden_dropout_prob": 0, "wave_mode": "interference",
           "torch_dtype": "float32", "_commit_hash": None, "transformers_version": "4.57.1",
           "id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = WaveConfig.from_pretrained(tmp_path)
    assert (config.hidden_size, config.hidden_dropout_prob, config.wave_mode) == (64, 0, "interference")
    assert config.id2label == {0: "neg", 1: "pos"} and config.ngram_sizes == () and config.auto_map == WAVE_AUTO_MAP


def test_auto_map_is_set_and_extendable():
    assert WaveConfig().auto_map == WAVE_AUTO_MAP
    extra = {"AutoModelForTokenClassification": "modeling_wave.Other"}
    assert WaveConfig(auto_map=extra).auto_map == {**WAVE_AUTO_MAP, **extra}


@pytest.mark.parametrize("name", PRESETS)
def test_presets(name):
    path = REPO_ROOT / "configuration" / "models" / f"{name}.json"
    raw = json.loads(path.read_text())
    assert raw["model_type"] == "wave"
    for config in (WaveConfig.from_pretrained(str(path)), WaveConfig.from_json_file(str(path))):
        assert config.wave_mode == PRESETS[name]
        assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (768, 1, 30522)
        assert config.num_labels == 2
        assert config.wave_readout in ("real_imag", "real") or config.wave_mode == "interference"
    assert type(AutoConfig.from_pretrained(str(path))) is WaveConfig


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_the_papers_model(name):
    """The paper's "2.4 million parameters" leave out the 30,522 x 768 embedding table (23.4M)."""
    config = WaveConfig.from_json_file(str(REPO_ROOT / "configuration" / "models" / f"{name}.json"))
    model = WaveForSequenceClassification(config)
    embedding_tables = 30522 * 768 + 512 * 768  # tokens and learned positions
    assert model.num_parameters() - model.num_parameters(exclude_embeddings=True) == embedding_tables
    assert round(model.num_parameters(exclude_embeddings=True) / 1e6, 1) == 2.4
