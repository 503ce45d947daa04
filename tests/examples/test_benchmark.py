"""examples/benchmark.py: one `--quick` run (tiny models, lengths 32-128) and checks of what it writes; its parts
in `wave_examples.benchmark` and its FLOP model, `wave_examples.flops`.

Nothing here asserts a speed or a memory target: wall-clock numbers depend on the machine. The tests check that the
outputs exist, hold every field, are positive and finite, and that every reported ratio is computed from numbers of
the same run. The analytic FLOP counts are checked against PyTorch's own FlopCounterMode.
"""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification

import wave_examples.benchmark.settings as benchmark_settings
from conftest import REPO_ROOT
from modeling_wave import WaveConfig, WaveForSequenceClassification
from wave_examples import flops
from wave_examples.benchmark import memory, models, timing

MODELS = ["wave-modulation", "wave-interference", "transformer-1layer", "bert-base", "minilm"]
CAPPED = {"bert-base": 64}  # a preset cap, so that the skip path is exercised deterministically
QUICK_LENGTHS = [32, 64, 128]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("benchmark")
    command = [
        sys.executable, "examples/benchmark.py", "configuration/benchmark/benchmark-quick.json",
        "--output_dir", str(output_dir),
        "--max_lengths", ",".join(f"{name}={length}" for name, length in CAPPED.items()),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((output_dir / "benchmark.json").read_text())
    return output_dir, report, completed.stdout


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_writes_json_markdown_and_plots(quick_run):
    output_dir, _, stdout = quick_run
    for name in ("benchmark.json", "benchmark.md", "time_vs_length.png", "memory_vs_length.png"):
        assert (output_dir / name).stat().st_size > 0, name
    for name in ("time_vs_length.png", "memory_vs_length.png"):
        assert (output_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (output_dir / "benchmark.md").read_text()
    assert markdown in stdout  # the same table is printed
    for heading in ("## Batch 4, length 32", "## Physical limit", "## Targets", "## Length sweep, batch 2"):
        assert heading in markdown
    for name in MODELS:
        assert models.MODEL_RECIPES[name]["label"] in markdown


def test_settings_come_from_the_quick_preset(quick_run):
    _, report, _ = quick_run
    settings = report["settings"]
    assert settings["quick"] is True
    assert settings["models"] == MODELS
    assert (settings["batch_size"], settings["seq_length"]) == (4, 32)
    assert settings["seq_lengths"] == QUICK_LENGTHS
    assert settings["max_lengths"] == CAPPED
    assert report["environment"]["device"] == "cpu"
    assert report["environment"]["threads"] == 1
    assert positive(report["elapsed_s"])


def test_main_point_times_are_positive_medians_of_the_repeats(quick_run):
    _, report, _ = quick_run
    main, repeats = report["main"], report["settings"]["repeats"]
    assert list(main["results"]) == MODELS
    for name, result in main["results"].items():
        for key in ("train_step_s", "inference_s"):
            samples = result[key]["samples"]
            assert len(samples) == repeats and all(positive(s) for s in samples), (name, key)
            assert result[key]["min"] <= result[key]["median"] <= result[key]["max"]
        assert result["train_samples_per_s"] == pytest.approx(main["batch_size"] / result["train_step_s"]["median"])
        assert result["inference_sequences_per_s"] == pytest.approx(
            main["batch_size"] / result["inference_s"]["median"]
        )
        steps = math.ceil(report["settings"]["epoch_size"] / main["batch_size"])
        assert result["epoch_s_from_median"] == pytest.approx(steps * result["train_step_s"]["median"])
        assert positive(result["flops"]["train_step"]) and positive(result["train_gflops_per_s"])
        assert positive(report["epoch"][name]["epoch_s"])


def test_models_are_described(quick_run):
    _, report, _ = quick_run
    models = report["models"]
    assert {models[n]["model_type"] for n in MODELS} == {"wave", "bert"}
    for name in MODELS:
        params = models[name]["parameters"]
        assert params["total"] == params["embedding"] + params["non_embedding"] > 0
    assert models["bert-base"]["config"]["num_hidden_layers"] == 12
    assert models["transformer-1layer"]["config"]["num_hidden_layers"] == 1
    assert models["minilm"]["config"]["num_hidden_layers"] == 6
    assert models["wave-interference"]["config"]["wave_mode"] == "interference"


def test_memory_is_measured_per_model_in_a_fresh_process(quick_run):
    _, report, _ = quick_run
    memory = report["memory"]
    assert list(memory) == MODELS
    for name, probe in memory.items():
        assert "error" not in probe, probe
        assert probe["peak_reset"] is True
        assert positive(probe["runtime_mb"])
        main_point = probe["points"]["main:4x32"]
        assert positive(main_point["train_mb"]) and positive(main_point["inference_mb"])
        assert main_point["train_mb"] < 64 * 1024  # a sane number of MB, not kB or bytes
        sweep = [key for key in probe["points"] if key.startswith("sweep:")]
        timed = [length for length, r in report["sweep"]["results"][name].items() if "train_step_s" in r]
        assert sorted(sweep) == sorted(f"sweep:2x{length}" for length in timed)


def test_sweep_times_every_length_or_says_why_not(quick_run):
    _, report, _ = quick_run
    sweep = report["sweep"]
    assert sweep["seq_lengths"] == QUICK_LENGTHS
    for name in MODELS:
        points = sweep["results"][name]
        assert list(points) == [str(length) for length in QUICK_LENGTHS]
        for length, point in points.items():
            if name in CAPPED and int(length) > CAPPED[name]:
                assert "capped by the preset" in point["skipped"]
            else:
                assert positive(point["train_step_s"]["median"]) and positive(point["inference_s"]["median"]), (
                    name,
                    length,
                )


def test_ratios_are_computed_from_this_run(quick_run):
    _, report, _ = quick_run
    main = report["main"]["results"]
    ratios = {(r["model"], r["what"]): r for r in report["ratios"]}
    for wave in ("wave-modulation", "wave-interference"):
        for reference, label in (("bert-base", "BERT-base size"), ("transformer-1layer", "1-layer Transformer")):
            row = ratios[(wave, f"training step time / {label}")]
            assert row["numerator"] == main[wave]["train_step_s"]["median"]
            assert row["denominator"] == main[reference]["train_step_s"]["median"]
        memory = ratios[(wave, "peak training memory / BERT-base size")]
        assert memory["numerator"] == report["memory"][wave]["points"]["main:4x32"]["train_mb"]
        assert memory["denominator"] == report["memory"]["bert-base"]["points"]["main:4x32"]["train_mb"]
        limit = report["physical_limit"][wave]
        forward = ratios[(wave, "forward GFLOP/s / forward matmul GFLOP/s")]
        assert forward["value"] == pytest.approx(limit["forward_fraction"])
        assert forward["numerator"] == main[wave]["inference_gflops_per_s"]
        scaling = ratios[(wave, "training step time at 128 / at 32 tokens")]
        assert scaling["numerator"] == report["sweep"]["results"][wave]["128"]["train_step_s"]["median"]
        assert scaling["target"] == pytest.approx(1.125 * 128 / 32)
    targets = {row["what"]: row["target"] for row in report["ratios"]}
    assert targets["training step time / BERT-base size"] == pytest.approx(1 / 40)
    assert targets["training step time / 1-layer Transformer"] == pytest.approx(1 / 3)
    assert targets["peak training memory / BERT-base size"] == pytest.approx(0.10)
    assert targets["forward GFLOP/s / forward matmul GFLOP/s"] == pytest.approx(0.60)
    for row in report["ratios"]:
        assert positive(row["value"])
        assert row["value"] == pytest.approx(row["numerator"] / row["denominator"])
        assert row["met"] == (row["value"] <= row["target"] if row["op"] == "<=" else row["value"] >= row["target"])


def test_matmul_probe_covers_the_wave_layer_shapes(quick_run):
    _, report, _ = quick_run
    shapes = report["main"]["matmul"]["shapes"]
    tokens, d = 4 * 32, models.QUICK_SIZE["hidden_size"]
    assert {(s["m"], s["k"], s["n"]) for s in shapes if s["pass"] == "forward"} == {
        (tokens, d, 2 * d),
        (tokens, 2 * d, d),
    }
    for shape in shapes:
        assert shape["flops"] == 2 * shape["m"] * shape["k"] * shape["n"] * shape["count"]
        assert positive(shape["gflops_per_s"])
    for limit in report["physical_limit"].values():
        assert positive(limit["forward_fraction"]) and positive(limit["train_fraction"])


# --- analytic FLOP counts against torch's FlopCounterMode (matmuls: exact) ----------------------------------------


def counted_flops(model, vocab_size, batch_size=3, length=10):
    ids = torch.randint(1, vocab_size, (batch_size, length))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.zeros(batch_size, dtype=torch.long),
    }
    with FlopCounterMode(display=False) as forward:
        loss = model(**batch).loss
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    return forward.get_total_flops(), backward.get_total_flops()


@pytest.mark.parametrize(
    "fields",
    [
        {"num_hidden_layers": 2, "intermediate_size": 24, "num_labels": 3},
        {"wave_mode": "interference", "wave_readout": "magnitude"},
        {"wave_readout": "real"},
    ],
)
def test_wave_matmul_flops_match_flop_counter(fields):
    config = WaveConfig(hidden_size=16, vocab_size=50, **{"intermediate_size": 0, **fields})
    forward, backward = counted_flops(WaveForSequenceClassification(config), 50)
    counts = flops.wave_flops(config, 3, 10)
    assert counts["forward_matmul"] == forward
    assert backward == 2 * forward  # why a training step counts 3 x forward
    d = config.hidden_size
    assert counts["matmul"]["projections"] == config.num_hidden_layers * 2 * 30 * d * 2 * d
    assert counts["forward"] > counts["forward_matmul"]


def test_bert_matmul_flops_match_flop_counter():
    config = BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=2, vocab_size=50)
    config._attn_implementation = "sdpa"
    forward, backward = counted_flops(BertForSequenceClassification(config), 50)
    assert flops.bert_flops(config, 3, 10)["forward_matmul"] == forward
    assert backward == 2 * forward


# --- settings and the sweep budget ---------------------------------------------------------------------------------


def test_command_line_wins_over_preset_and_quick_defaults(tmp_path):
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps({"quick": True, "repeats": 7, "seq_lengths": [16, 8]}))
    settings = benchmark_settings.parse_settings([str(preset), "--repeats", "3", "--models", "wave-modulation,minilm"])
    assert settings["repeats"] == 3  # command line over preset
    assert settings["seq_lengths"] == [8, 16]  # preset over quick defaults, sorted
    assert settings["batch_size"] == benchmark_settings.QUICK_DEFAULTS["batch_size"]
    assert settings["models"] == ["wave-modulation", "minilm"]
    settings = benchmark_settings.parse_settings(["--seq_lengths", "", "--max_lengths", "bert-base=1024"])
    assert settings["seq_lengths"] == [] and settings["max_lengths"] == {"bert-base": 1024}
    assert settings["batch_size"] == 64 and settings["seq_length"] == 128  # the paper's setting by default


def test_unknown_preset_keys_and_models_are_refused(tmp_path):
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps({"batchsize": 8}))
    with pytest.raises(SystemExit):
        benchmark_settings.parse_settings([str(preset)])
    with pytest.raises(ValueError, match="Unknown model"):
        benchmark_settings.parse_settings(["--models", "gpt-5"])


def test_preset_lists_dicts_and_description_are_read_as_the_command_line_writes_them(tmp_path):
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps({"description": "kept", "models": ["minilm", "bert-base"], "seq_lengths": [],
                                  "max_lengths": {"bert-base": 64}, "memory": False}))  # fmt: skip
    settings = benchmark_settings.parse_settings([str(preset)])
    assert settings["models"] == ["minilm", "bert-base"] and settings["seq_lengths"] == []
    assert settings["max_lengths"] == {"bert-base": 64} and settings["memory"] is False
    assert settings["description"] == "kept"
    assert benchmark_settings.parse_settings(["--no_memory", "--models", "minilm"])["memory"] is False


def test_a_failed_memory_probe_is_reported_not_raised(tmp_path):
    result = memory._probe_result(1, tmp_path / "missing.json", "", "Traceback ...\nMemoryError: out of memory\n")
    assert result == {"error": "probe failed: MemoryError: out of memory"}


def test_sweep_prediction_uses_the_measured_exponent_between_linear_and_quadratic():
    assert timing.predicted_step_seconds({128: 1.0}, 256) == pytest.approx(2.0)  # one point: linear
    assert timing.predicted_step_seconds({128: 1.0, 256: 3.0}, 512) == pytest.approx(3.0 * 3.0)  # measured 2^1.58
    assert timing.predicted_step_seconds({128: 1.0, 256: 1.1}, 512) == pytest.approx(2.2)  # at least linear
    assert timing.predicted_step_seconds({128: 1.0, 256: 8.0}, 512) == pytest.approx(32.0)  # at most quadratic


@pytest.mark.parametrize(
    "name", ["benchmark-cpu.json", "benchmark-quick.json", "benchmark-gpu.json", "benchmark-epoch.json"]
)
def test_presets_parse(name):
    settings = benchmark_settings.parse_settings([str(REPO_ROOT / "configuration" / "benchmark" / name)])
    assert settings["models"] and settings["repeats"] > 0
    assert all(length > 0 for length in settings["seq_lengths"])


def test_eager_wave_recipe_is_the_same_model_with_the_autograd_wave():
    settings = {**benchmark_settings.DEFAULTS, "quick": True}
    fused = models.model_config("wave-modulation", settings, max_positions=64)
    eager = models.model_config("wave-modulation-eager", settings, max_positions=64)
    assert (fused.wave_implementation, eager.wave_implementation) == ("fused", "eager")
    assert {**eager.to_dict(), "wave_implementation": "fused"} == fused.to_dict()
    assert "wave-modulation-eager" not in benchmark_settings.DEFAULTS["models"]  # opt-in: the CPU preset names it
