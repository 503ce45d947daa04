"""The fused wave (`WaveFusedFunction`, `wave_implementation="fused"`) against the autograd reference ("eager"):
same values, same gradients, fewer saved activations, and one graph under `torch.compile`."""

import pytest
import torch
from wave_testing import VARIANTS, WAVES, WaveModelTester, randomize_parameters, variant_id, wave_kwargs

from modeling_wave import WaveConfig, WaveForSequenceClassification
from modeling_wave.modeling_wave import WaveFusedFunction, readout_features, wave_operation


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def awkward_variants(generator) -> torch.Tensor:
    """(B, T, 2D) float64 variants with zeroed pads, a dimension held by one token (G^2 - w^2 = 0 exactly) and a
    one-token text: where the clamp and `wave_eps` of Eq. (2) act."""
    variants = torch.randn(3, 6, 10, generator=generator, dtype=torch.float64)
    variants[1, 4:] = 0  # pads
    variants[0, :, 0] = 0
    variants[0, 2, 0] = 1.5  # token 2 holds all of dimension 0
    variants[2, 1:] = 0  # a one-token text
    return variants.requires_grad_()


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_fused_function_passes_gradcheck(wave):
    variants = awkward_variants(torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda v: WaveFusedFunction.apply(v, *wave, 1e-6), (variants,))


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_fused_function_equals_wave_operation(wave):
    generator = torch.Generator().manual_seed(1)
    variants = awkward_variants(generator)
    fused = WaveFusedFunction.apply(variants, *wave, 1e-6)
    w, w_prime = variants.chunk(2, dim=-1)
    reference = readout_features(*wave_operation(w, w_prime, wave[0], 1e-6), wave[1])
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-12)

    grad_output = torch.randn(fused.shape, generator=generator, dtype=torch.float64)
    (fused_grad,) = torch.autograd.grad(fused, variants, grad_output)
    (reference_grad,) = torch.autograd.grad(reference, variants, grad_output)
    torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-10, atol=1e-12)


def loss_and_gradients(config, inputs, labels, dtype=torch.float64):
    model = randomize_parameters(WaveForSequenceClassification(config)).to(dtype).train()
    torch.manual_seed(0)  # the same dropout masks for both implementations
    outputs = model(**inputs, labels=labels)
    outputs.loss.backward()
    return outputs.logits, {name: param.grad for name, param in model.named_parameters()}


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_fused_model_equals_eager_model(variant):
    """Whole models, padded batches, two layers with feed-forward blocks and dropout: logits and every gradient."""
    tester = WaveModelTester()
    config, inputs, labels = tester.prepare_config_and_inputs()
    results = {}
    for implementation in ("eager", "fused"):
        torch.manual_seed(0)
        results[implementation] = loss_and_gradients(
            tester.get_config(**variant, wave_implementation=implementation), inputs, labels["single"]
        )
    (eager_logits, eager_grads), (fused_logits, fused_grads) = results["eager"], results["fused"]
    torch.testing.assert_close(fused_logits, eager_logits, rtol=1e-10, atol=1e-12)
    assert fused_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-9, atol=1e-11, msg=name)


def saved_bytes(config, inputs) -> int:
    """Bytes that autograd keeps for the backward pass of one forward pass (each tensor storage counted once)."""
    model = WaveForSequenceClassification(config).train()
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**inputs).logits.sum().backward()
    return sum(storages.values())


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_fused_wave_keeps_fewer_activations(wave):
    tester = WaveModelTester(batch_size=8, seq_length=64, hidden_size=64, intermediate_size=0, num_hidden_layers=1)
    _, inputs, _ = tester.prepare_config_and_inputs()
    eager = saved_bytes(tester.get_config(**wave_kwargs(wave), wave_implementation="eager"), inputs)
    fused = saved_bytes(tester.get_config(**wave_kwargs(wave), wave_implementation="fused"), inputs)
    assert fused < eager


def test_causal_model_ignores_the_fused_path():
    """The causal wave needs prefix sums (`global_energy(causal=True)`), which the fused function does not take."""
    config = WaveConfig(vocab_size=50, hidden_size=16, intermediate_size=0, is_decoder=True)
    assert config.wave_implementation == "fused"
    model = WaveForSequenceClassification(config).eval()
    calls = []
    original = WaveFusedFunction.forward
    try:
        WaveFusedFunction.forward = staticmethod(lambda *args: calls.append(1) or original(*args))
        model(input_ids=torch.randint(1, 50, (2, 5)))
    finally:
        WaveFusedFunction.forward = staticmethod(original)
    assert calls == []


def test_torch_compile_has_no_graph_breaks_and_matches_eager():
    """One graph (fullgraph=True fails on any break), forward and backward equal to the uncompiled model."""
    tester = WaveModelTester(hidden_dropout_prob=0.0, classifier_dropout=0.0)
    config, inputs, labels = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForSequenceClassification(config)).train()
    compiled = torch.compile(model, fullgraph=True)

    def run(module):
        module.zero_grad()
        outputs = module(**inputs, labels=labels["single"])
        outputs.loss.backward()
        return outputs.logits.detach(), {name: param.grad.clone() for name, param in model.named_parameters()}

    eager_logits, eager_grads = run(model)
    compiled_logits, compiled_grads = run(compiled)
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-4, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)
