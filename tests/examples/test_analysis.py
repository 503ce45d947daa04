"""The analyses in `examples/analysis/` (docs/analysis.md): each script runs with `--quick` on a tiny generated
IMDB-like CSV folder and writes its PNG, JSON and Markdown outputs; the gradient hooks change nothing; frozen
pre-trained embeddings stay frozen; and the complexity formulas equal what PyTorch counts.

The scripts run in this process (their `main(argv)`), which shares one import of torch and transformers.
"""

import gc
import json
import math
import random

import pytest
import torch
from conftest import REPO_ROOT
from example_scripts import load_example

from wave_examples import analysis as common
from wave_examples import analysis_gradients

complexity = load_example("analysis/complexity")
convergence = load_example("analysis/convergence")
embeddings = load_example("analysis/embeddings")
gradients = load_example("analysis/gradients")

POSITIVE = "great wonderful moving superb funny brilliant touching".split()
NEGATIVE = "awful boring dull terrible stupid weak pointless".split()
FILLER = "the film plot actors story scenes movie director was and with a it this of".split()


def write_imdb_like(folder, rows: int, seed: int):
    """A CSV in IMDB's layout (id,rating,label,text) whose label shows in the words."""
    rng = random.Random(seed)
    lines = ["id,rating,label,text"]
    for i in range(rows):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(5, 60))]
        for _ in range(rng.randint(1, 4)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        lines.append(f'{i},{8 if label else 2},{label},"{" ".join(words)}"')
    folder.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module", autouse=True)
def older_objects_out_of_garbage_collection():
    """The Trainer begins every training with a full `gc.collect()` (accelerate's `free_memory`), about 0.3 s with
    torch, transformers and datasets imported; these tests train some twenty models. The objects that exist before
    them (the imported libraries) are kept out of those collections, and handed back to the collector after."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imdb-like")
    write_imdb_like(folder / "train.csv", rows=80, seed=0)
    write_imdb_like(folder / "test.csv", rows=40, seed=1)
    return folder


def run_quick(module, data_dir, output_dir, *extra):
    data = [] if data_dir is None else ["--data_dir", str(data_dir)]
    return module.main(["--quick", *data, "--output_dir", str(output_dir), *extra])


def assert_outputs(folder, *names):
    for name in names:
        path = folder / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} was not written"
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        if name.endswith(".json"):
            json.loads(path.read_text())


@pytest.fixture(scope="module")
def convergence_run(data_dir, tmp_path_factory):
    """`convergence.py --quick --record_gradients`: shared by the tests of both its outputs."""
    folder = tmp_path_factory.mktemp("convergence")
    return folder, run_quick(convergence, data_dir, folder, "--record_gradients")


@pytest.fixture(scope="module")
def gradients_run(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gradients")
    return folder, run_quick(gradients, data_dir, folder)


def test_convergence_quick(convergence_run):
    folder, payload = convergence_run
    assert_outputs(folder, "convergence.json", "convergence.png", "convergence.md")
    settings = payload["run"]["settings"]
    assert list(payload["models"]) == ["wave-modulation", "wave-interference", "bert-1layer", "minilm"]
    expected_steps = list(range(0, settings["max_steps"] + 1, settings["eval_every"]))
    for name, result in payload["models"].items():
        assert [e["step"] for e in result["eval"]] == expected_steps, name
        assert all(0 <= e["accuracy"] <= 1 and math.isfinite(e["loss"]) for e in result["eval"]), name
        assert result["step"] == list(range(1, settings["max_steps"] + 1)), name
    # The MiniLM baseline is the pre-trained model (384 wide, 6 layers); the others are built narrow for --quick.
    assert payload["models"]["minilm"]["parameters"] > 20_000_000
    saved = json.loads((folder / "convergence.json").read_text())
    assert saved["models"]["wave-modulation"]["eval"] == payload["models"]["wave-modulation"]["eval"]
    assert "QUICK RUN" in (folder / "convergence.md").read_text()


def test_gradients_quick(gradients_run):
    folder, payload = gradients_run
    assert_outputs(folder, "gradients.json", "gradients.png", "gradients.md")
    steps = payload["run"]["settings"]["max_steps"]
    for name, result in payload["models"].items():
        for quantity in analysis_gradients.QUANTITIES:
            values = result["gradient_norms"][quantity]
            assert len(values) == steps, (name, quantity)
            assert all(math.isfinite(v) and v > 0 for v in values), (name, quantity, values)
        assert payload["summary"][name]["pooled"]["p10"] <= payload["summary"][name]["pooled"]["p90"]


def test_convergence_records_gradients_of_the_same_run(convergence_run, gradients_run, data_dir, tmp_path):
    """`convergence.py --record_gradients`: the convergence series of a plain run and the norms of gradients.py."""
    folder, both = convergence_run
    assert_outputs(folder, "convergence.json", "gradients.json", "gradients.png", "gradients.md")
    plain = run_quick(convergence, data_dir, tmp_path / "plain", "--models", "wave-modulation,bert-1layer")
    alone = gradients_run[1]
    for name in ("wave-modulation", "bert-1layer"):
        assert both["models"][name]["eval"] == plain["models"][name]["eval"], name
        assert both["models"][name]["train_loss"] == plain["models"][name]["train_loss"], name
    for name in both["models"]:
        assert both["gradients"]["models"][name]["gradient_norms"] == alone["models"][name]["gradient_norms"], name
        # Recorded before the Trainer clips: the norm of all gradients is the one the Trainer logs (and clips).
        recorded = both["gradients"]["models"][name]["gradient_norms"]["all"]
        assert recorded == pytest.approx(both["models"][name]["grad_norm"], rel=1e-4), name


def test_embeddings_quick(data_dir, tmp_path):
    payload = run_quick(embeddings, data_dir, tmp_path)
    assert_outputs(tmp_path, "embeddings.json", "embeddings.png", "embeddings.md")
    grid = {(r["model"], r["embeddings"]) for r in payload["runs"]}
    models = ("wave-modulation", "wave-interference", "bert-1layer")
    assert grid == {(m, e) for m in models for e in embeddings.EMBEDDINGS}
    assert payload["hidden_size"] == 384
    frozen = {r["model"]: r for r in payload["runs"] if r["embeddings"] == "frozen"}
    trainable = {r["model"]: r for r in payload["runs"] if r["embeddings"] == "trainable"}
    for model, run in frozen.items():
        assert trainable[model]["trainable_parameters"] - run["trainable_parameters"] == 30522 * 384


def test_complexity_quick_formulas_equal_counts(tmp_path):
    payload = run_quick(complexity, None, tmp_path)
    assert_outputs(tmp_path, "complexity.json", "complexity.png", "complexity.md")
    assert payload["checks"]["count_mismatches"] == []  # FLOPs and activation bytes: exact
    low, high = payload["checks"]["elements_counted_over_formula"]
    assert 0.9 <= low <= high <= 1.1
    assert {r["variant"] for r in payload["rows"]} == set(complexity.VARIANTS)
    assert all(r["measured"]["seconds"] > 0 for r in payload["rows"])


@pytest.mark.parametrize("variant", list(complexity.VARIANTS))
def test_complexity_formulas_at_other_shapes(variant):
    """Several heads, one text, another width: FLOPs and activation bytes still equal the formulas exactly."""
    settings = {"hidden_size": 128, "layers": 1, "batch_size": 1, "repeats": 1, "seed": 0}
    for n in (5, 24):
        measured = complexity.measure(variant, n, settings)
        formula = complexity.formulas(variant, n, d=128, h=2, L=1, B=1)
        assert measured["memory_bytes"] == formula["memory_bytes"], (variant, n)
        if measured["flops"] is not None:  # PyTorch cannot count the fused attention kernel
            assert measured["flops"] == formula["flops"], (variant, n)
        assert measured["elements"] == pytest.approx(formula["elements"], rel=0.1), (variant, n)


def test_wave_memory_is_linear_and_attention_quadratic():
    d, h = 768, 12
    for n in (256, 4096):
        wave = complexity.formulas("wave-modulation", 2 * n, d, h, L=1)["memory_bytes"]
        assert wave == 2 * complexity.formulas("wave-modulation", n, d, h, L=1)["memory_bytes"]
    transformer = [complexity.formulas("transformer", n, d, h, L=1)["memory_bytes"] for n in (2048, 4096)]
    assert transformer[1] > 3 * transformer[0]


def tiny_settings(**overrides):
    settings = {
        "seed": 0, "hidden_size": 32, "pretrained_embeddings": "sentence-transformers/all-MiniLM-L6-v2",
        "model_specs": json.loads((REPO_ROOT / common.DEFAULT_PRESET).read_text())["model_specs"],
    }
    return {**settings, **overrides}


@pytest.mark.parametrize("name", ["wave-modulation", "bert-1layer"])
def test_gradient_hooks_change_nothing(name):
    """The recorder only observes: loss and every parameter gradient are those of the model without hooks."""
    batch = {"input_ids": torch.randint(1, 30522, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long),
             "labels": torch.tensor([0, 1, 1])}
    batch["attention_mask"][0, 6:] = 0
    results = []
    for hooked in (False, True):
        model = common.build_model(name, tiny_settings(), num_labels=2).eval()
        recorder = analysis_gradients.GradientRecorder(model) if hooked else None
        loss = model(**batch).loss
        loss.backward()
        if hooked:
            recorder.record()  # what the Trainer calls before its optimizer step
            recorder.remove()
            assert all(math.isfinite(v[0]) and v[0] > 0 for v in recorder.series.values()), recorder.series
            classifier = torch.cat([p.grad.flatten() for p in model.classifier.parameters()]).norm().item()
            assert recorder.series["classifier"][0] == pytest.approx(classifier)
        results.append((loss.item(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    assert results[0][0] == results[1][0]
    for key, grad in results[0][1].items():
        assert torch.equal(grad, results[1][1][key]), key


def test_frozen_pretrained_embeddings_do_not_move():
    settings = tiny_settings()
    table = common.pretrained_word_embeddings(settings["pretrained_embeddings"])
    model = common.build_model("wave-modulation", settings, 2, hidden_size=table.shape[1], embeddings="frozen")
    weight = model.get_input_embeddings().weight
    assert torch.equal(weight, table) and not weight.requires_grad
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(input_ids=torch.randint(1, 30522, (2, 7)), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    assert torch.equal(model.get_input_embeddings().weight, table)


def test_pretrained_embeddings_need_the_same_width():
    with pytest.raises(ValueError, match="same vocabulary and hidden_size"):
        common.build_model("wave-modulation", tiny_settings(), 2, hidden_size=32, embeddings="trainable")


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        convergence.main(["--quick", "--models", "wave-modulation,gpt-5", "--output_dir", str(tmp_path)])
