"""Tests of `modeling_wave.modeling_wave`: shapes, outputs, exact padding, numerics, the paper's equations and the
Transformers conventions. A tiny `WaveModelTester`, as Transformers' `tests/models/fnet/test_modeling_fnet.py`.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/model/test_modeling_wave.py -q`
"""

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode, resolve_name

from conftest import EXPECTED_AUTO_MAP
from wave_testing import (
    PROPERTY_SETTINGS,
    VARIANTS,
    WAVES,
    WaveModelTester,
    paper_wave_operation,
    randomize_parameters,
    variant_id,
    wave_kwargs,
)
import modeling_wave
from modeling_wave import WaveConfig, WaveForSequenceClassification, WaveModel, WavePreTrainedModel
from modeling_wave.configuration_wave import POOLINGS, WAVE_MODES
from modeling_wave.modeling_wave import WaveEmbeddings, WaveEncoder, WaveLayer, wave_operation
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)  # every test builds its models from the same random numbers, whatever ran before


@pytest.fixture
def tester():
    return WaveModelTester()


# ----------------------------------------------------------------------------------------------------------------
# Structure and outputs


def test_pretrained_model_attributes():
    assert WavePreTrainedModel.config_class is WaveConfig
    assert WavePreTrainedModel.base_model_prefix == "wave"
    assert WavePreTrainedModel.main_input_name == "input_ids"
    assert WavePreTrainedModel._no_split_modules == ["WaveLayer"]
    assert WavePreTrainedModel.supports_gradient_checkpointing is True
    for model_class in (WaveModel, WaveForSequenceClassification):
        assert issubclass(model_class, WavePreTrainedModel)


def test_module_tree(tester):
    model = WaveForSequenceClassification(tester.get_config())
    assert isinstance(model.wave, WaveModel)
    assert isinstance(model.wave.embeddings, WaveEmbeddings)
    assert isinstance(model.wave.encoder, WaveEncoder)
    assert len(model.wave.encoder.layer) == tester.num_hidden_layers
    assert all(isinstance(layer, WaveLayer) for layer in model.wave.encoder.layer)
    assert model.classifier.out_features == tester.num_labels


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_model(variant):
    tester = WaveModelTester(**variant)
    config, inputs, _ = tester.prepare_config_and_inputs()
    tester.create_and_check_model(config, inputs)


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_hidden_states(wave):
    tester = WaveModelTester(**wave_kwargs(wave))
    config, inputs, _ = tester.prepare_config_and_inputs()
    tester.create_and_check_hidden_states(config, inputs)


def test_output_hidden_states_from_config(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    config.output_hidden_states = True
    assert len(WaveModel(config).eval()(**inputs).hidden_states) == tester.num_hidden_layers + 1
    assert WaveModel(config).eval()(**inputs, output_hidden_states=False).hidden_states is None


@pytest.mark.parametrize("pooling", POOLINGS)
def test_tuple_outputs(tester, pooling):
    tester.config_kwargs["pooling"] = pooling
    config, inputs, labels = tester.prepare_config_and_inputs()
    tester.create_and_check_tuple_outputs(config, inputs, labels["single"])


def test_return_dict_false_from_config(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    config.return_dict = False
    assert isinstance(WaveModel(config).eval()(**inputs), tuple)
    assert isinstance(WaveForSequenceClassification(config).eval()(**inputs), tuple)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_for_sequence_classification(variant):
    tester = WaveModelTester(**variant)
    config, inputs, labels = tester.prepare_config_and_inputs()
    tester.create_and_check_for_sequence_classification(config, inputs, labels["single"])


def test_inputs_embeds_equal_input_ids(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveModel(config).eval())
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    from_ids = model(**inputs)
    from_embeds = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
    torch.testing.assert_close(from_embeds.pooler_output, from_ids.pooler_output)


def test_explicit_position_ids_equal_default(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = WaveModel(config).eval()
    positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp_min(0)
    torch.testing.assert_close(model(**inputs, position_ids=positions).pooler_output, model(**inputs).pooler_output)
    shifted = model(**inputs, position_ids=positions + 3).pooler_output
    assert not torch.allclose(shifted, model(**inputs).pooler_output)  # learned positions are used


def test_eval_is_deterministic_and_dropout_acts_in_train(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = WaveForSequenceClassification(config).eval()
    torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    first = model(**inputs).logits
    assert not torch.allclose(first, model(**inputs).logits)


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_every_parameter_gets_a_gradient(wave):
    tester = WaveModelTester(hidden_dropout_prob=0.0, **wave_kwargs(wave))
    config, inputs, labels = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForSequenceClassification(config))
    model(**inputs, labels=labels["single"]).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} does not train"


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_tokens_mix_through_the_wave(wave):
    """Changing one token changes the others' outputs through G and s (Eqs. 1-2), except for interference read out
    as its real part w + w', where no token sees any other (the reason the config warns about it)."""
    config = WaveModelTester(num_hidden_layers=1, position_embedding_type="none", **wave_kwargs(wave)).get_config()
    model = randomize_parameters(WaveModel(config).eval())
    input_ids = torch.tensor([[5, 6, 7, 8]])
    changed = torch.tensor([[5, 6, 7, 42]])
    first = model(input_ids).last_hidden_state[0, :3]
    second = model(changed).last_hidden_state[0, :3]
    mixes = not torch.allclose(first, second, rtol=0, atol=1e-6)
    assert mixes == (wave != ("interference", "real"))


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_without_feed_forward_block(wave, tmp_path):
    """intermediate_size=0: each block is wave -> g -> dropout -> residual -> LayerNorm only (the paper's 2.4M)."""
    tester = WaveModelTester(intermediate_size=0, hidden_dropout_prob=0.0, **wave_kwargs(wave))
    config, inputs, labels = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForSequenceClassification(config))
    for layer in model.wave.encoder.layer:
        assert layer.feed_forward is None and not hasattr(layer, "output_layer_norm")
    tester.create_and_check_finite_outputs_and_gradients(model, **inputs, labels=labels["single"])
    texts = [torch.randint(1, tester.vocab_size, (length,)) for length in (1, 4, 7)]
    tester.create_and_check_padding_invariance(config, texts, [50, 0, 9], ["left", "right", "left"], True)
    tester.create_and_check_save_load(config, inputs, tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# Losses: problem_type handled exactly as BertForSequenceClassification


def classifier_loss(tester, kind: str):
    """A classifier, its batch and labels, and its output for the labels of `kind` ("single", "multi", ...)."""
    config, inputs, labels = tester.prepare_config_and_inputs()
    model = WaveForSequenceClassification(config).eval()
    return model, inputs, labels, model(**inputs, labels=labels[kind])


def test_single_label_loss(tester):
    model, inputs, labels, result = classifier_loss(tester, "single")
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(result.loss, F.cross_entropy(result.logits, labels["single"]))
    ignored = labels["single"].clone()
    ignored[:3] = -100  # CrossEntropyLoss' ignore_index is accepted
    expected = F.cross_entropy(result.logits[3:], labels["single"][3:])
    torch.testing.assert_close(model(**inputs, labels=ignored).loss, expected)


def test_multi_label_loss(tester):
    model, _, labels, result = classifier_loss(tester, "multi")
    assert model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(result.loss, F.binary_cross_entropy_with_logits(result.logits, labels["multi"]))


def test_regression_loss():
    tester = WaveModelTester(num_labels=1)
    model, inputs, labels, result = classifier_loss(tester, "regression")
    assert model.config.problem_type == "regression"
    assert result.logits.shape == (tester.batch_size, 1)
    torch.testing.assert_close(result.loss, F.mse_loss(result.logits.squeeze(-1), labels["regression"]))
    # integer targets are regression targets too when num_labels == 1, as in BERT
    integer_targets = labels["single"]
    expected = F.mse_loss(result.logits.squeeze(-1), integer_targets.float())
    torch.testing.assert_close(model(**inputs, labels=integer_targets).loss, expected)


def test_explicit_problem_type_is_kept(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    config.problem_type = "regression"
    model = WaveForSequenceClassification(config).eval()
    targets = torch.randn(tester.batch_size, tester.num_labels)
    result = model(**inputs, labels=targets)
    torch.testing.assert_close(result.loss, F.mse_loss(result.logits, targets))
    assert model.config.problem_type == "regression"


# ----------------------------------------------------------------------------------------------------------------
# Padding is exact: the mask is honoured in G, s and the pooling


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_does_not_change_logits(variant, side):
    tester = WaveModelTester(**variant)
    config = tester.get_config()
    generator = torch.Generator().manual_seed(1)
    texts = [torch.randint(1, tester.vocab_size, (length,), generator=generator) for length in (1, 2, 5, 7)]
    for pads in ([0, 0, 0, 0], [1, 3, 0, 50], [50, 49, 48, 0]):
        tester.create_and_check_padding_invariance(config, texts, pads, [side] * 4, garbage_pads=False)
        tester.create_and_check_padding_invariance(config, texts, pads, [side] * 4, garbage_pads=True)


@PROPERTY_SETTINGS
@given(
    variant=st.sampled_from(VARIANTS),
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    data=st.data(),
    garbage_pads=st.booleans(),
    intermediate_size=st.sampled_from([37, 0]),
    seed=st.integers(0, 2**16),
)
def test_padding_property(variant, lengths, data, garbage_pads, intermediate_size, seed):
    """Any texts, any 0..50 pads per row on either side (mixed in one batch), any pad ids: the same logits."""
    pads = data.draw(st.lists(st.integers(0, 50), min_size=len(lengths), max_size=len(lengths)))
    sides = data.draw(st.lists(st.sampled_from(["left", "right"]), min_size=len(lengths), max_size=len(lengths)))
    tester = WaveModelTester(intermediate_size=intermediate_size, **variant)
    generator = torch.Generator().manual_seed(seed)
    texts = [torch.randint(1, tester.vocab_size, (length,), generator=generator) for length in lengths]
    tester.create_and_check_padding_invariance(tester.get_config(), texts, pads, sides, garbage_pads, seed)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_without_attention_mask_pads_are_tokens(pooling):
    """As in BERT: without a mask every position is a token, so padding changes the result, and no mask equals an
    all-ones mask."""
    model = randomize_parameters(WaveForSequenceClassification(WaveModelTester(pooling=pooling).get_config()).eval())
    left_padded = torch.tensor([[0, 0, 0, 11, 12, 13]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1]])
    unmasked = model(input_ids=left_padded).logits
    torch.testing.assert_close(unmasked, model(input_ids=left_padded, attention_mask=torch.ones_like(mask)).logits)
    assert not torch.allclose(unmasked, model(input_ids=left_padded, attention_mask=mask).logits, atol=1e-4)


def test_all_padding_row_does_not_affect_other_rows(tester):
    model = randomize_parameters(WaveForSequenceClassification(tester.get_config()).eval())
    input_ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    together = model(input_ids=input_ids, attention_mask=mask).logits
    alone = model(input_ids=input_ids[:1, :2]).logits
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=1e-5)
    assert torch.isfinite(together).all()


# ----------------------------------------------------------------------------------------------------------------
# The wave operation: the closed form equals the paper's trigonometric form (Eqs. 1-7)


@pytest.mark.parametrize("mode", WAVE_MODES)
def test_closed_form_equals_trigonometric_form(mode):
    generator = torch.Generator().manual_seed(0)
    for batch, tokens, dim in [(1, 2, 1), (3, 5, 16), (2, 9, 7), (4, 64, 33)]:
        w = torch.randn(batch, tokens, dim, generator=generator, dtype=torch.float64)
        w_prime = 3 * torch.randn(batch, tokens, dim, generator=generator, dtype=torch.float64)
        w[:, -1] = 0  # a padded (zeroed) token: alpha = pi / 2, Z = i G
        if tokens > 2:
            w_prime[0, 1:] = 0.0
            w_prime[0, 1, :] = 1e-3  # a dimension dominated by one token, but not held by it alone
        real, imag = wave_operation(w, w_prime, mode, eps=0.0)
        ref_real, ref_imag = paper_wave_operation(w, w_prime, mode)
        assert real.dtype == imag.dtype == torch.float64
        torch.testing.assert_close(real, ref_real, rtol=0, atol=1e-9)
        torch.testing.assert_close(imag, ref_imag, rtol=0, atol=1e-9)


def test_modulation_magnitude_is_the_same_for_every_token():
    """|Z Z'| = G G' (Eqs. 6-7): why the config refuses modulation with the magnitude readout."""
    generator = torch.Generator().manual_seed(0)
    w, w_prime = torch.randn(2, 2, 6, 8, generator=generator, dtype=torch.float64)
    real, imag = wave_operation(w, w_prime, "modulation", eps=0.0)
    magnitude = torch.sqrt(real**2 + imag**2)
    expected = w.norm(dim=1, keepdim=True) * w_prime.norm(dim=1, keepdim=True)
    torch.testing.assert_close(magnitude, expected.expand_as(magnitude), rtol=0, atol=1e-9)
    real, imag = wave_operation(w, w_prime, "interference", eps=0.0)
    interference_magnitude = torch.sqrt(real**2 + imag**2)
    assert not torch.allclose(interference_magnitude[:, :1].expand_as(interference_magnitude), interference_magnitude)


class _RecordTorchCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(resolve_name(func) or repr(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", WAVE_MODES)
def test_wave_operation_needs_no_trigonometry_or_complex_numbers(mode):
    w, w_prime = torch.randn(2, 2, 5, 4)
    with _RecordTorchCalls() as recorder:
        real, imag = wave_operation(w, w_prime, mode)
    assert recorder.names, "the recorder saw no torch call"
    forbidden = ("sin", "cos", "tan", "atan", "atan2", "exp", "polar", "complex", "view_as_complex", "angle")
    used = {name.rsplit(".", 1)[-1] for name in recorder.names}
    assert not used & set(forbidden), used
    assert not real.is_complex() and not imag.is_complex()


@pytest.mark.parametrize("mode", WAVE_MODES)
def test_wave_eps_gives_finite_gradients_on_one_token(mode):
    """One token holds all of every dimension's energy: G^2 - w^2 = 0 and d sqrt(x)/dx is infinite at 0."""
    w, w_prime = torch.randn(2, 3, 1, 4).unbind(0)
    w.requires_grad_(True)
    w_prime.requires_grad_(True)
    real, imag = wave_operation(w, w_prime, mode, eps=1e-6)
    (real.sum() + imag.sum()).backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(w_prime.grad).all()


# ----------------------------------------------------------------------------------------------------------------
# Numerics: one token, all padding, zero embeddings, very long inputs, half precision


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_one_token_input_is_finite(variant):
    tester = WaveModelTester(hidden_dropout_prob=0.0, **variant)
    model = randomize_parameters(WaveForSequenceClassification(tester.get_config()))
    input_ids = torch.tensor([[17], [3]])
    labels = torch.tensor([0, 2])
    tester.create_and_check_finite_outputs_and_gradients(model, input_ids=input_ids, labels=labels)
    tester.create_and_check_finite_outputs_and_gradients(
        model, input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_all_padding_row_is_finite(variant):
    tester = WaveModelTester(hidden_dropout_prob=0.0, **variant)
    config, inputs, labels = tester.prepare_config_and_inputs()
    inputs["attention_mask"][1] = 0
    model = randomize_parameters(WaveForSequenceClassification(config))
    tester.create_and_check_finite_outputs_and_gradients(model, **inputs, labels=labels["single"])
    only_padding = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.zeros(2, 4)}
    tester.create_and_check_finite_outputs_and_gradients(model, **only_padding, labels=torch.tensor([0, 1]))


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_all_zero_embeddings_are_finite(wave, pooling):
    """Zero embeddings, no positions and zero projection biases: w = w' = 0 and G = 0 everywhere."""
    tester = WaveModelTester(hidden_dropout_prob=0.0, position_embedding_type="none", pooling=pooling)
    model = WaveForSequenceClassification(tester.get_config(**wave_kwargs(wave)))
    for layer in model.wave.encoder.layer:
        assert (layer.wave.projection.bias == 0).all()
    embeds = torch.zeros(3, 5, tester.hidden_size, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    labels = torch.tensor([0, 1, 2])
    tester.create_and_check_finite_outputs_and_gradients(model, inputs_embeds=embeds, labels=labels)
    embeds.grad = None
    tester.create_and_check_finite_outputs_and_gradients(
        model, inputs_embeds=embeds, attention_mask=mask, labels=labels
    )


@pytest.mark.parametrize("position_embedding_type", ["sinusoidal", "none"])
@pytest.mark.parametrize("mode", WAVE_MODES)
def test_very_long_input_is_finite(mode, position_embedding_type):
    """8,192 tokens (16 x the learned-position limit of BERT) with a tiny width: no n x n term, finite values."""
    tester = WaveModelTester(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        hidden_dropout_prob=0.0,
        wave_mode=mode,
        position_embedding_type=position_embedding_type,
    )
    model = randomize_parameters(WaveForSequenceClassification(tester.get_config()))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, tester.vocab_size, (2, 8192), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, :5000] = 0  # second row: left padded
    outputs = tester.create_and_check_finite_outputs_and_gradients(
        model, input_ids=input_ids, attention_mask=mask, labels=torch.tensor([0, 1])
    )
    model.eval()
    alone = model(input_ids=input_ids[1:, 5000:]).logits  # the padding is still exact at this length
    torch.testing.assert_close(outputs.logits[1:], alone, rtol=0, atol=1e-4)


@PROPERTY_SETTINGS
@given(
    variant=st.sampled_from(VARIANTS),
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    scale=st.sampled_from([0.0, 1e-4, 1.0, 30.0]),
    intermediate_size=st.sampled_from([37, 0]),
    seed=st.integers(0, 2**16),
)
def test_finite_property(variant, lengths, scale, intermediate_size, seed):
    """Random configs, lengths (0 = an all-padding row), masks and embedding scales: finite outputs and gradients."""
    tester = WaveModelTester(hidden_dropout_prob=0.0, intermediate_size=intermediate_size, **variant)
    torch.manual_seed(seed)
    model = randomize_parameters(WaveForSequenceClassification(tester.get_config()), seed)
    width = max(max(lengths), 1)
    embeds = (scale * torch.randn(len(lengths), width, tester.hidden_size)).requires_grad_(True)
    mask = torch.zeros(len(lengths), width)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    labels = torch.randint(0, tester.num_labels, (len(lengths),))
    tester.create_and_check_finite_outputs_and_gradients(
        model, inputs_embeds=embeds, attention_mask=mask, labels=labels
    )


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_bfloat16_autocast_on_cpu(wave):
    tester = WaveModelTester(hidden_dropout_prob=0.0, **wave_kwargs(wave))
    config, inputs, labels = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForSequenceClassification(config))
    reference = model(**inputs).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = tester.create_and_check_finite_outputs_and_gradients(model, **inputs, labels=labels["single"])
    assert outputs.logits.dtype == torch.bfloat16
    torch.testing.assert_close(outputs.logits.float(), reference, rtol=0, atol=0.1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_half_precision_model_and_autocast_on_cpu(wave, dtype):
    tester = WaveModelTester(hidden_dropout_prob=0.0, **wave_kwargs(wave))
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForSequenceClassification(config).eval())
    reference = model(**inputs).logits
    with torch.autocast("cpu", dtype=dtype):
        autocast_logits = model(**inputs).logits
    half_logits = model.to(dtype)(**inputs).logits
    assert half_logits.dtype == dtype
    large = model(inputs_embeds=100 * torch.randn(2, 5, tester.hidden_size, dtype=dtype)).logits
    for logits in (autocast_logits, half_logits, large):
        assert torch.isfinite(logits).all()
    for logits in (autocast_logits, half_logits):
        torch.testing.assert_close(logits.float(), reference, rtol=0, atol=0.1)


@pytest.mark.parametrize("half", ["model", "autocast"])
@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_float16_survives_text_energy_beyond_its_range(wave, half):
    """A long text of large activations: G^2 = sum_j w_j^2 exceeds float16's largest value (65,504), so the wave
    statistics must run in float32 and the readout's input must be clamped before a float16 matmul."""
    tester = WaveModelTester(hidden_size=8, intermediate_size=16, num_hidden_layers=1, **wave_kwargs(wave))
    model = randomize_parameters(WaveModel(tester.get_config(position_embedding_type="none")).eval())
    embeds = 200 * torch.randn(1, 1024, 8, generator=torch.Generator().manual_seed(0))
    w = model.encoder.layer[0].wave.projection(embeds)
    assert w.square().sum(dim=1).max() > 2 * torch.finfo(torch.float16).max  # the test really overflows float16
    if half == "model":
        outputs = model.half()(inputs_embeds=embeds.half())
    else:
        with torch.autocast("cpu", dtype=torch.float16):
            outputs = model(inputs_embeds=embeds)
    assert outputs.last_hidden_state.dtype == torch.float16 or half == "autocast"
    assert torch.isfinite(outputs.last_hidden_state).all() and torch.isfinite(outputs.pooler_output).all()


# ----------------------------------------------------------------------------------------------------------------
# Clear input errors


def _bad_inputs():
    ids = torch.randint(1, 99, (2, 5))
    return [
        ("1-D input_ids", dict(input_ids=ids[0]), r"input_ids.*\(batch_size, sequence_length\)"),
        ("float input_ids", dict(input_ids=ids.float()), "integer token ids"),
        ("mask shape", dict(input_ids=ids, attention_mask=torch.ones(2, 6)), "attention_mask.*same shape"),
        ("id too large", dict(input_ids=ids.clone().fill_(99)), r"vocab_size=99"),
        ("negative id", dict(input_ids=ids.clone().fill_(-1)), r"vocab_size=99"),
        ("too long", dict(input_ids=torch.ones(1, 17, dtype=torch.long)), "max_position_embeddings"),
        ("both", dict(input_ids=ids, inputs_embeds=torch.zeros(2, 5, 32)), "exactly one of"),
        ("neither", dict(), "exactly one of"),
        ("embeds width", dict(inputs_embeds=torch.zeros(2, 5, 31)), "hidden_size=32"),
        ("empty", dict(input_ids=torch.ones(2, 0, dtype=torch.long)), "sequence length 0"),
        ("label too large", dict(input_ids=ids, labels=torch.tensor([0, 3])), r"num_labels=3"),
        ("negative label", dict(input_ids=ids, labels=torch.tensor([-2, 0])), r"num_labels=3"),
        ("label count", dict(input_ids=ids, labels=torch.tensor([0, 1, 2])), "3 labels for a batch of 2"),
        ("multi-label shape", dict(input_ids=ids, labels=torch.ones(2, 2)), r"num_labels=3"),
    ]


@pytest.mark.parametrize("name, inputs, message", _bad_inputs(), ids=[case[0] for case in _bad_inputs()])
def test_clear_input_errors(name, inputs, message):
    model = WaveForSequenceClassification(WaveModelTester(max_position_embeddings=16).get_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_long_input_with_padding_fits_learned_positions():
    """Positions count real tokens, so 16 tokens with 4 pads fit 16 learned positions; 17 real tokens do not."""
    model = WaveModel(WaveModelTester(max_position_embeddings=16).get_config()).eval()
    input_ids = torch.ones(1, 20, dtype=torch.long)
    mask = torch.ones(1, 20)
    mask[0, :4] = 0
    assert model(input_ids=input_ids, attention_mask=mask).last_hidden_state.shape == (1, 20, 32)
    mask[0, 3] = 1
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=input_ids, attention_mask=mask)


def test_model_rejects_config_made_invalid_after_creation(tester):
    config = tester.get_config()
    config.wave_readout = "magnitude"  # set after validation, with modulation
    with pytest.raises(ValueError, match="wave_readout"):
        WaveModel(config)


# ----------------------------------------------------------------------------------------------------------------
# Transformers conventions


def test_init_weights_covers_every_parameter(tester):
    model = WaveForSequenceClassification(tester.get_config(position_embedding_type="learned"))
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float("nan"))
    for module in model.modules():
        model._init_weights(module)
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), f"_init_weights does not initialise {name}"


def test_initial_values(tester):
    config = tester.get_config(initializer_range=0.05)
    model = WaveForSequenceClassification(config)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            weight = module.weight.detach()
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                assert module.padding_idx == config.pad_token_id
                assert (weight[config.pad_token_id] == 0).all(), f"{name}: the pad embedding is not zero"
                weight = weight[torch.arange(len(weight)) != config.pad_token_id]
            assert abs(weight.mean()) < 0.02 and 0.035 < weight.std() < 0.065, name
        if isinstance(module, nn.Linear):
            assert (module.bias == 0).all(), name
        if isinstance(module, nn.LayerNorm):
            assert (module.weight == 1).all() and (module.bias == 0).all(), name


@pytest.mark.parametrize("variant", VARIANTS[:6] + VARIANTS[-6:], ids=variant_id)
def test_save_and_load(variant, tmp_path):
    tester = WaveModelTester(**variant)
    config, inputs, _ = tester.prepare_config_and_inputs()
    tester.create_and_check_save_load(config, inputs, tmp_path / "classifier")
    tester.create_and_check_save_load(config, inputs, tmp_path / "base", model_class=WaveModel)


def test_base_checkpoint_into_classifier_and_back(tester, tmp_path):
    config, inputs, _ = tester.prepare_config_and_inputs()
    base = randomize_parameters(WaveModel(config).eval())
    base.save_pretrained(tmp_path / "base")

    classifier, info = WaveForSequenceClassification.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert (classifier.classifier.bias == 0).all() and 0 < classifier.classifier.weight.std() < 0.05  # _init_weights
    classifier.eval()
    torch.testing.assert_close(classifier.wave(**inputs).pooler_output, base(**inputs).pooler_output, rtol=0, atol=0)

    classifier.save_pretrained(tmp_path / "classifier")
    back, info = WaveModel.from_pretrained(tmp_path / "classifier", output_loading_info=True)
    assert sorted(info["unexpected_keys"]) == ["classifier.bias", "classifier.weight"]
    assert not info["missing_keys"]
    torch.testing.assert_close(back.eval()(**inputs).pooler_output, base(**inputs).pooler_output, rtol=0, atol=0)


def test_get_and_set_input_embeddings(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    for model in (WaveModel(config).eval(), WaveForSequenceClassification(config).eval()):
        embeddings = model.get_input_embeddings()
        assert embeddings is model.base_model.embeddings.word_embeddings
        assert (embeddings.num_embeddings, embeddings.embedding_dim) == (tester.vocab_size, tester.hidden_size)
        before = model(**inputs)[0]
        new = nn.Embedding(tester.vocab_size, tester.hidden_size)
        model.set_input_embeddings(new)
        assert model.get_input_embeddings() is new
        assert not torch.allclose(model(**inputs)[0], before)


def test_resize_token_embeddings(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = WaveForSequenceClassification(config).eval()
    old = model.get_input_embeddings().weight.detach().clone()
    before = model(**inputs).logits
    resized = model.resize_token_embeddings(tester.vocab_size + 21)
    assert resized.weight.shape == (tester.vocab_size + 21, tester.hidden_size)
    assert model.config.vocab_size == tester.vocab_size + 21
    torch.testing.assert_close(resized.weight[: tester.vocab_size], old)
    torch.testing.assert_close(model(**inputs).logits, before)  # old tokens unchanged
    assert model(input_ids=torch.tensor([[tester.vocab_size + 20]])).logits.shape == (1, tester.num_labels)
    model.resize_token_embeddings(50)
    assert model.config.vocab_size == 50
    with pytest.raises(ValueError, match="vocab_size=50"):
        model(input_ids=torch.tensor([[60]]))


@pytest.mark.parametrize("enable", ["activation_checkpointing", "gradient_checkpointing", "reentrant"])
def test_gradient_checkpointing_gives_the_same_gradients(enable):
    tester = WaveModelTester(hidden_dropout_prob=0.0, classifier_dropout=0.0)
    config, inputs, labels = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForSequenceClassification(config)).train()

    def gradients():
        model.zero_grad()
        model(**inputs, labels=labels["single"]).loss.backward()
        return {name: param.grad.clone() for name, param in model.named_parameters()}

    expected = gradients()
    assert not model.is_activation_checkpointing
    if enable == "gradient_checkpointing":
        with pytest.warns(FutureWarning):  # the transformers 5 name is activation_checkpointing_enable
            model.gradient_checkpointing_enable()
    elif enable == "reentrant":
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    else:
        model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing

    wave_calls = []
    hooks = [layer.wave.register_forward_hook(lambda *_: wave_calls.append(1)) for layer in model.wave.encoder.layer]
    checkpointed = gradients()
    for hook in hooks:
        hook.remove()
    assert len(wave_calls) == 2 * tester.num_hidden_layers  # each layer ran again in the backward pass
    for name, grad in expected.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_num_parameters(tester):
    d, n = tester.hidden_size, tester.num_labels
    for (readout, readout_width), i in itertools.product((("real_imag", 2 * d), ("real", d)), (37, 0)):
        model = WaveForSequenceClassification(tester.get_config(wave_readout=readout, intermediate_size=i))
        per_layer = (
            (d * 2 * d + 2 * d)  # projection to w and w'
            + (readout_width * d + d)  # readout g
            + 2 * d  # LayerNorm after the wave
            + ((d * i + i + i * d + d) + 2 * d if i else 0)  # feed-forward and its LayerNorm (none if i == 0)
        )
        non_embedding = tester.num_hidden_layers * per_layer + d * n + n
        embedding = tester.vocab_size * d + tester.max_position_embeddings * d
        assert model.num_parameters(exclude_embeddings=True) == non_embedding
        assert model.num_parameters() == non_embedding + embedding == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Auto classes and checkpoints


def test_auto_classes_are_registered(tester, tmp_path):
    config = tester.get_config()
    assert type(AutoConfig.for_model("wave")) is WaveConfig
    assert type(AutoModel.from_config(config)) is WaveModel
    assert type(AutoModelForSequenceClassification.from_config(config)) is WaveForSequenceClassification
    WaveForSequenceClassification(config).save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is WaveConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is WaveModel  # local classes, no trust_remote_code needed
    assert type(AutoModelForSequenceClassification.from_pretrained(tmp_path)) is WaveForSequenceClassification


@pytest.mark.parametrize("model_class", [WaveModel, WaveForSequenceClassification])
def test_checkpoint_carries_code_and_auto_map(model_class, tester, tmp_path):
    model_class(tester.get_config()).save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "modeling_wave.py", "configuration_wave.py"} <= {
        path.name for path in tmp_path.iterdir()
    }
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == EXPECTED_AUTO_MAP
    package = Path(modeling_wave.__file__).parent
    for name in ("modeling_wave.py", "configuration_wave.py"):
        assert (tmp_path / name).read_text() == (package / name).read_text()


def test_random_sweep_matches_between_batched_and_single_texts():
    """A seeded sweep over configs and batch shapes (complementing the hypothesis tests): batching is exact."""
    rng = random.Random(0)
    for _ in range(10):
        variant = rng.choice(VARIANTS)
        tester = WaveModelTester(num_hidden_layers=rng.randint(1, 3), **variant)
        texts = [torch.randint(1, 99, (rng.randint(1, 10),)) for _ in range(rng.randint(1, 5))]
        pads = [rng.randint(0, 50) for _ in texts]
        sides = [rng.choice(["left", "right"]) for _ in texts]
        tester.create_and_check_padding_invariance(tester.get_config(), texts, pads, sides, rng.random() < 0.5)


def test_the_package_exports_its_config_error():
    assert "WaveConfigError" in modeling_wave.__all__
    namespace = {}
    exec("from modeling_wave import *", namespace)
    assert issubclass(namespace["WaveConfigError"], ValueError)


class DeviceSpy(torch.Tensor):
    """A tensor that records where `.to()` is asked to move it (this machine has one device to move between)."""

    moves = []

    def to(self, *args, **kwargs):
        DeviceSpy.moves.append(kwargs.get("device", next((a for a in args if isinstance(a, (str, torch.device))), None)))
        return super().to(*args, **kwargs)


def test_the_wide_logits_join_the_logits_on_their_device():
    """With `device_map`, the wide part may live on another device than the classifier: its logits move over."""
    config = WaveModelTester(wide_ngram_sizes=[1, 2], wide_buckets=97).get_config()
    model = WaveForSequenceClassification(config).eval()
    wide_forward = model.wide.forward
    model.wide.forward = lambda *args: wide_forward(*args).as_subclass(DeviceSpy)
    DeviceSpy.moves.clear()
    _, inputs, _ = WaveModelTester().prepare_config_and_inputs()
    model(**inputs)
    assert torch.device("cpu") in [None if m is None else torch.device(m) for m in DeviceSpy.moves]
