"""Tests of the training API (`modeling_wave.trainer_wave`, `modeling_wave.optimization_wave`): sparse tables as a
training-time switch, `LazyAdamW`, clipping of sparse gradients, `WaveTrainer`, and checkpoints that the plain
`Trainer` trains.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/model/test_trainer_wave.py -q`
"""

import inspect
import json
import logging

import pytest
import torch
from conftest import REPO_ROOT
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSequenceClassification, Trainer, TrainingArguments

from modeling_wave import (
    LazyAdamW,
    WaveConfig,
    WaveForCausalLM,
    WaveForMaskedLM,
    WaveForSequenceClassification,
    WaveTrainer,
    WaveTrainingArguments,
    clip_grad_norm_sparse_aware_,
    create_wave_optimizer,
    distillation_loss,
    enable_sparse_embeddings,
    sparse_gradient_parameters,
    wave_schedule,
)
from modeling_wave.optimization_wave import covering_length

MODEL_CONFIGS = sorted(
    path for path in (REPO_ROOT / "configuration" / "models").glob("*.json")
    if json.loads(path.read_text()).get("model_type") == "wave"
)  # fmt: skip


class SparseTablesTester:
    """A tiny classifier with every table (token, n-gram, wide) and a batch for it."""

    def __init__(self, vocab_size=60, hidden_size=8, num_labels=3):
        self.config = WaveConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=0, num_labels=num_labels,
            ngram_sizes=[2], ngram_buckets=50, wide_ngram_sizes=[1, 2], wide_buckets=80, hidden_dropout_prob=0.0,
        )  # fmt: skip

    def dense_and_sparse_models(self):
        """Two copies of one model, the second with sparse tables; the wide part away from zero."""
        torch.manual_seed(0)
        dense = WaveForSequenceClassification(self.config)
        sparse = WaveForSequenceClassification(self.config)
        sparse.load_state_dict(dense.state_dict())
        with torch.no_grad():
            for model in (dense, sparse):
                model.wide.weight.copy_(torch.linspace(-1, 1, model.wide.weight.numel()).view_as(model.wide.weight))
        sparse.sparse_embeddings_enable()
        return dense, sparse

    @staticmethod
    def backward_on_a_batch(model):
        input_ids = torch.tensor([[5, 6, 7, 5, 6], [9, 9, 3, 0, 0]])
        attention_mask = (input_ids != 0).long()
        model(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 2])).loss.backward()


@pytest.fixture
def tester():
    return SparseTablesTester()


# ----------------------------------------------------------------------------------------------------------------
# The switch


def test_the_switch_makes_the_tables_sparse_and_leaves_positions_dense(tester):
    _, model = tester.dense_and_sparse_models()
    tables = model.sparse_embedding_tables()
    assert [t is m for t, m in zip(tables, (model.get_input_embeddings(), model.wave.embeddings.ngram_embeddings,
                                            model.wide))] == [True] * 3  # fmt: skip
    assert model.is_sparse_embeddings and all(t.sparse for t in tables)
    assert not model.wave.embeddings.position_embeddings.sparse
    model.sparse_embeddings_disable()
    assert not model.is_sparse_embeddings and sparse_gradient_parameters(model) == set()


def test_the_switch_is_not_saved_with_the_model(tester, tmp_path):
    _, model = tester.dense_and_sparse_models()
    model.save_pretrained(tmp_path)
    assert "sparse_embeddings" not in json.loads((tmp_path / "config.json").read_text())
    assert not WaveForSequenceClassification.from_pretrained(tmp_path).is_sparse_embeddings


def test_a_config_saved_with_sparse_embeddings_loads_dense_with_a_warning(tester, tmp_path, caplog):
    """Checkpoints of the recipe saved before the switch moved out of the config carry `sparse_embeddings: true`."""
    WaveForSequenceClassification(tester.config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "sparse_embeddings": True}))
    with caplog.at_level(logging.WARNING):
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert not model.is_sparse_embeddings and not hasattr(model.config, "sparse_embeddings")
    assert "WaveTrainingArguments(sparse_embeddings=True)" in caplog.text


@pytest.mark.parametrize("head", [WaveForMaskedLM, WaveForCausalLM])
def test_language_model_heads_refuse_sparse_tables_by_name(head):
    model = head(WaveConfig(vocab_size=60, hidden_size=8, intermediate_size=0))
    with pytest.raises(ValueError, match="dense gradient at every step.*without sparse_embeddings"):
        model.sparse_embeddings_enable()


def test_enable_refuses_sharded_runs_and_other_models(tester):
    with pytest.raises(ValueError, match="DeepSpeed or FSDP.*sparse_embeddings=False"):
        enable_sparse_embeddings(WaveForSequenceClassification(tester.config), sharded=True)
    with pytest.raises(ValueError, match="Linear is not a Wave model"):
        enable_sparse_embeddings(torch.nn.Linear(2, 2))


def test_over_nccl_the_tables_stay_dense_with_a_warning_naming_gloo(tester, monkeypatch, caplog):
    """torch has no sparse all-reduce for NCCL: the same launch on GPUs trains with dense tables."""
    model = WaveForSequenceClassification(tester.config)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: "nccl")
    with caplog.at_level(logging.WARNING):
        assert enable_sparse_embeddings(model) is False
    assert not model.is_sparse_embeddings and "--ddp_backend gloo" in caplog.text


def test_sparse_gradients_equal_the_dense_ones(tester):
    dense, sparse = tester.dense_and_sparse_models()
    tester.backward_on_a_batch(dense)
    tester.backward_on_a_batch(sparse)
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse.parameters()):
        grad = p_sparse.grad.to_dense() if p_sparse.grad.is_sparse else p_sparse.grad
        torch.testing.assert_close(grad, p_dense.grad, msg=name)
    assert sparse.wave.embeddings.ngram_embeddings.weight.grad.is_sparse and sparse.wide.weight.grad.is_sparse


# ----------------------------------------------------------------------------------------------------------------
# Clipping and optimizers


@pytest.mark.parametrize("max_norm", [0.01, float("inf")])
def test_clipping_sparse_gradients_equals_torch_clipping_of_the_dense_ones(tester, max_norm):
    dense, sparse = tester.dense_and_sparse_models()
    tester.backward_on_a_batch(dense)
    tester.backward_on_a_batch(sparse)
    expected = torch.nn.utils.clip_grad_norm_(dense.parameters(), max_norm)
    torch.testing.assert_close(clip_grad_norm_sparse_aware_(sparse.parameters(), max_norm), expected)
    for p_dense, p_sparse in zip(dense.parameters(), sparse.parameters()):
        grad = p_sparse.grad.to_dense() if p_sparse.grad.is_sparse else p_sparse.grad
        torch.testing.assert_close(grad, p_dense.grad, rtol=1e-5, atol=1e-7)


def test_a_sparse_adagrad_step_updates_the_touched_rows_as_a_dense_one_and_no_other(tester):
    dense, sparse = tester.dense_and_sparse_models()
    before = sparse.wide.weight.detach().clone()
    for model in (dense, sparse):
        tester.backward_on_a_batch(model)
        torch.optim.Adagrad(model.parameters(), lr=0.1).step()
    touched = dense.wide.weight.grad.abs().sum(dim=1) != 0
    torch.testing.assert_close(sparse.wide.weight[touched], dense.wide.weight[touched])
    assert torch.equal(sparse.wide.weight[~touched], before[~touched])
    assert touched.any() and (~touched).any()


def test_lazy_adamw_updates_touched_rows_as_adamw_and_leaves_the_others(tester):
    dense, sparse = tester.dense_and_sparse_models()
    before = sparse.wide.weight.detach().clone()
    for model in (dense, sparse):
        tester.backward_on_a_batch(model)
    settings = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    torch.optim.AdamW(dense.parameters(), **settings).step()
    lazy = LazyAdamW([{"params": list(sparse.parameters())}], sparse_gradient_parameters(sparse), **settings)
    lazy.step()
    touched = dense.wide.weight.grad.abs().sum(dim=1) != 0
    torch.testing.assert_close(sparse.wide.weight[touched], dense.wide.weight[touched])
    assert torch.equal(sparse.wide.weight[~touched], before[~touched]) and (~touched).any()
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse.parameters()):
        if id(p_sparse) not in sparse_gradient_parameters(sparse):
            torch.testing.assert_close(p_sparse, p_dense, msg=name)  # the dense parameters: AdamW itself
    assert len(lazy.param_groups) == 2 and lazy.sparse.param_groups[0] is lazy.param_groups[1]


def test_the_optimizer_gives_each_table_its_rate_and_lazy_adam(tester, tmp_path):
    _, sparse = tester.dense_and_sparse_models()
    args = WaveTrainingArguments(str(tmp_path), learning_rate=1e-3, wide_learning_rate=0.03,
                                 embedding_learning_rate=0.01, use_cpu=True, report_to=[])  # fmt: skip
    optimizer = create_wave_optimizer(sparse, args)
    assert isinstance(optimizer, LazyAdamW)

    def rates_of(parameter):
        return [g["lr"] for g in optimizer.param_groups if any(p is parameter for p in g["params"])]

    assert rates_of(sparse.wide.weight) == [0.03]
    assert rates_of(sparse.get_input_embeddings().weight) == [0.01]
    assert rates_of(sparse.wave.embeddings.ngram_embeddings.weight) == [0.01]
    assert rates_of(sparse.classifier.weight) == [1e-3]
    assert any(p is sparse.wide.weight for g in optimizer.sparse.param_groups for p in g["params"])


def test_an_optimizer_that_cannot_step_sparse_gradients_is_refused_by_name(tester, tmp_path):
    _, sparse = tester.dense_and_sparse_models()
    args = WaveTrainingArguments(str(tmp_path), optim="adafactor", use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="optim=adafactor cannot step.*sparse_embeddings=False"):
        create_wave_optimizer(sparse, args)


def test_trainer_private_gradient_norm_hooks_keep_the_signatures_wave_trainer_overrides():
    """`WaveTrainer` overrides Trainer's private `_clip_grad_norm(model)` and `_get_grad_norm(model, grad_norm=None)`:
    a Transformers release that renames or reshapes them must fail here, not silently leave sparse gradients
    unclipped (or crash in torch's `clip_grad_norm_`)."""
    assert list(inspect.signature(Trainer._clip_grad_norm).parameters) == ["self", "model"]
    assert list(inspect.signature(Trainer._get_grad_norm).parameters) == ["self", "model", "grad_norm"]
    source = inspect.getsource(Trainer)
    assert "self._clip_grad_norm(model)" in source and "self._get_grad_norm(model, grad_norm=grad_norm)" in source


def test_the_schedule_follows_the_data():
    short = wave_schedule([12] * 4361, global_batch_size=64, min_updates=1500)  # TREC: 69 steps an epoch
    assert short.max_steps == 1500 and short.eval_steps == 250 and short.epochs == pytest.approx(1500 / 69)
    long = wave_schedule([300] * 20_000, global_batch_size=64, max_train_tokens=12_000_000, eval_tokens=300 * 5000)
    assert long.max_steps == 501 and long.eval_steps is None  # IMDB's 501 updates; no evaluation during training
    assert covering_length(list(range(1, 1001)), 0.99, cap=3200) == 992
    with pytest.raises(ValueError, match="at least one training text"):
        wave_schedule([], global_batch_size=64)


# ----------------------------------------------------------------------------------------------------------------
# Training: WaveTrainer, and the plain Trainer on every model config and on WaveTrainer's checkpoints


def tiny_dataset(vocab_size: int = 30522) -> Dataset:
    """The issue's texts, as ids: 64 rows of two texts (`great movie` / `terrible plot`) with labels 1 / 0."""
    ids = {1: [101, 2307, 3185, 102], 0: [101, 6659, 5436, 102]}
    rows = [ids[label] for label in (1, 0)] * 32
    return Dataset.from_dict({"input_ids": [[i % vocab_size for i in r] for r in rows],
                              "attention_mask": [[1] * 4] * 64, "label": [1, 0] * 32})  # fmt: skip


def train_and_evaluate(trainer_class, model, args) -> tuple[float, float]:
    """Evaluation loss on the training rows (no dropout) before and after `trainer_class` trains `model`."""
    data = tiny_dataset(model.config.vocab_size)
    trainer = trainer_class(model=model, args=args, train_dataset=data, eval_dataset=data)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    return before, trainer.evaluate()["eval_loss"]


def plain_arguments(folder, **kwargs) -> TrainingArguments:
    """Default `TrainingArguments` (adamw_torch, max_grad_norm 1.0, learning rate 5e-5), a few steps, no saving."""
    return TrainingArguments(str(folder), per_device_train_batch_size=16, max_steps=6, report_to=[], use_cpu=True,
                             save_strategy="no", disable_tqdm=True, **kwargs)  # fmt: skip


@pytest.mark.parametrize("config_path", MODEL_CONFIGS, ids=lambda path: path.stem)
def test_the_plain_trainer_trains_a_fresh_model_of_every_model_config(config_path, tmp_path):
    config = AutoConfig.from_pretrained(config_path, num_labels=2)
    config.update({"wide_buckets": 4096} if config.wide_ngram_sizes else {})  # smaller tables, the same code path
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    before, after = train_and_evaluate(Trainer, model, plain_arguments(tmp_path))
    assert after < before


def test_wave_trainer_trains_sparse_tables_and_its_checkpoint_trains_with_the_plain_trainer(tmp_path):
    config = AutoConfig.from_pretrained(REPO_ROOT / "configuration/models/wave-recipe-64.json", num_labels=2,
                                        ngram_buckets=1000, wide_buckets=4096)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    args = WaveTrainingArguments(str(tmp_path / "wave"), sparse_embeddings=True, learning_rate=1e-3,
                                 wide_learning_rate=0.03, per_device_train_batch_size=16, max_steps=6, report_to=[],
                                 use_cpu=True, save_strategy="no", disable_tqdm=True, logging_steps=1)  # fmt: skip
    before, after = train_and_evaluate(WaveTrainer, model, args)
    assert model.is_sparse_embeddings and after < before - 0.05
    model.save_pretrained(tmp_path / "checkpoint")

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "checkpoint")
    assert not reloaded.is_sparse_embeddings
    before_plain, after_plain = train_and_evaluate(Trainer, reloaded, plain_arguments(tmp_path / "plain"))
    assert before_plain == pytest.approx(after, abs=1e-6) and after_plain < before_plain


def test_wave_trainer_logs_the_norm_of_sparse_gradients_and_clips_them(tmp_path):
    model = WaveForSequenceClassification(SparseTablesTester(vocab_size=30522).config)
    args = WaveTrainingArguments(str(tmp_path), sparse_embeddings=True, max_grad_norm=1e-3, learning_rate=1e-3,
                                 per_device_train_batch_size=16, max_steps=2, report_to=[], use_cpu=True,
                                 save_strategy="no", disable_tqdm=True, logging_steps=1)  # fmt: skip
    trainer = WaveTrainer(model=model, args=args, train_dataset=tiny_dataset())
    norms_after_clipping = []
    clip = trainer._clip_grad_norm

    def clip_and_measure(model):
        norm = clip(model)
        norms_after_clipping.append(clip_grad_norm_sparse_aware_(model.parameters(), float("inf")).item())
        return norm

    trainer._clip_grad_norm = clip_and_measure
    trainer.train()
    logged = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    assert len(logged) == 2 and all(norm > 1e-2 for norm in logged)  # the norm before clipping
    assert norms_after_clipping == pytest.approx([1e-3, 1e-3], rel=1e-3)


# ----------------------------------------------------------------------------------------------------------------
# Distillation: the loss of a `teacher_logits` column


def test_distillation_loss_mixes_labels_and_the_teachers_soft_targets():
    torch.manual_seed(0)
    logits, teacher = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3)
    labels = torch.tensor([0, 2, 1, -100, -100, 1])  # two rows the teacher alone labelled
    hard = torch.nn.functional.cross_entropy(logits[[0, 1, 2, 5]], labels[[0, 1, 2, 5]])
    mse = torch.nn.functional.mse_loss(logits, teacher)
    torch.testing.assert_close(distillation_loss(logits, teacher, labels, alpha=0.0), hard)
    torch.testing.assert_close(distillation_loss(logits, teacher, labels, alpha=1.0), mse)
    torch.testing.assert_close(distillation_loss(logits, teacher, labels, alpha=0.3), 0.7 * hard + 0.3 * mse)
    t = 2.0
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / t, -1), torch.softmax(teacher / t, -1),
                                    reduction="batchmean") * t**2  # fmt: skip
    torch.testing.assert_close(distillation_loss(logits, teacher, labels, 1.0, "kl", t), kl)
    only_teacher = distillation_loss(logits, teacher, torch.full((6,), -100), alpha=0.5)
    torch.testing.assert_close(only_teacher, 0.5 * mse)
    only_teacher.backward()
    assert logits.grad.abs().sum() > 0


def test_distillation_refuses_a_teacher_of_other_classes_and_bad_settings(tmp_path):
    with pytest.raises(ValueError, match=r"teacher_logits have shape \(2, 3\), the student's logits \(2, 2\)"):
        distillation_loss(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    for bad, match in (({"distillation_alpha": 1.5}, "distillation_alpha"), ({"distillation_loss": "l1"}, "one of"),
                       ({"distillation_temperature": 0}, "distillation_temperature")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            WaveTrainingArguments(str(tmp_path), use_cpu=True, report_to=[], **bad)


def test_wave_trainer_keeps_the_teacher_logits_column_through_trainers_private_hook(tmp_path):
    """Trainer drops the dataset columns that `forward` does not name; `WaveTrainer` adds `teacher_logits` in
    `_set_signature_columns_if_needed` (private: pinned here)."""
    assert list(inspect.signature(Trainer._set_signature_columns_if_needed).parameters) == ["self"]
    data = tiny_dataset().add_column("teacher_logits", [[1.0, -1.0]] * 64)
    args = WaveTrainingArguments(str(tmp_path), use_cpu=True, report_to=[], per_device_train_batch_size=8)
    trainer = WaveTrainer(model=WaveForSequenceClassification(SparseTablesTester(vocab_size=30522).config), args=args,
                          train_dataset=data)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["teacher_logits"].shape == (8, 2) and "teacher_logits" in trainer._signature_columns
