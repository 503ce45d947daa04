"""A saved checkpoint loads with `trust_remote_code=True` in a fresh Python process that cannot import `modeling_wave`,
using only the code files copied next to `model.safetensors`, and gives the same outputs as the parent process."""

import json
import os
import textwrap

import pytest
import torch
from fresh_python import run_outside_the_checkout
from wave_testing import WaveModelTester

from modeling_wave import WaveConfig, WaveForSequenceClassification, WaveModel

# Runs in the child. The package may be pip-installed (CI), so it is blocked before anything else is imported.
CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["modeling_wave"] = None  # any `import modeling_wave` now raises ImportError

    import json
    from pathlib import Path

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    work = Path(sys.argv[1])
    report = {"cwd": str(Path.cwd()), "sys_path": sys.path}
    try:
        import modeling_wave  # noqa: F401
        report["imported_local_package"] = True
    except ImportError:
        report["imported_local_package"] = False

    errors = {}
    for name, auto_class in [("config", AutoConfig), ("classifier", AutoModelForSequenceClassification)]:
        try:
            auto_class.from_pretrained(work / "classifier")
            errors[name] = None
        except ValueError as error:
            errors[name] = str(error)
    report["errors_without_trust"] = errors

    inputs = torch.load(work / "inputs.pt")
    classifier = AutoModelForSequenceClassification.from_pretrained(work / "classifier", trust_remote_code=True).eval()
    base_from_classifier = AutoModel.from_pretrained(work / "classifier", trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(work / "base", trust_remote_code=True).eval()
    config = AutoConfig.from_pretrained(work / "classifier", trust_remote_code=True)
    report["classes"] = {
        name: f"{type(obj).__module__}.{type(obj).__name__}"
        for name, obj in [("classifier", classifier), ("base_from_classifier", base_from_classifier),
                          ("base", base), ("config", config)]
    }
    with torch.no_grad():
        outputs = {
            "logits": classifier(**inputs).logits,
            "classifier_pooled": base_from_classifier(**inputs).pooler_output,
            "base_last_hidden_state": base(**inputs).last_hidden_state,
            "base_pooled": base(**inputs).pooler_output,
        }
    torch.save(outputs, work / "child_outputs.pt")
    (work / "report.json").write_text(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def child_run(tmp_path_factory):
    """Save two checkpoints and inputs, run the child once, and return its report and outputs with the parent's."""
    work = tmp_path_factory.mktemp("remote-code")
    torch.manual_seed(0)
    config = WaveModelTester(wave_mode="interference", wave_readout="magnitude", pooling="mean").get_config()
    classifier = WaveForSequenceClassification(config).eval()
    base = WaveModel(WaveConfig(**{**config.to_dict(), "wave_mode": "modulation", "wave_readout": "real"})).eval()
    with torch.no_grad():  # non-trivial weights, so equal outputs mean the weights really loaded
        for model in (classifier, base):
            for param in model.parameters():
                param.add_(0.1 * torch.randn_like(param))
    classifier.save_pretrained(work / "classifier")
    base.save_pretrained(work / "base")

    input_ids = torch.randint(1, 99, (4, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, :3] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    torch.save(inputs, work / "inputs.pt")
    with torch.no_grad():
        expected = {
            "logits": classifier(**inputs).logits,
            "classifier_pooled": classifier.wave(**inputs).pooler_output,
            "base_last_hidden_state": base(**inputs).last_hidden_state,
            "base_pooled": base(**inputs).pooler_output,
        }

    cwd, env = run_outside_the_checkout(CHILD, work, tmp_path_factory)
    report = json.loads((work / "report.json").read_text())
    return report, torch.load(work / "child_outputs.pt"), expected, cwd, env["HF_HOME"]


def test_child_cannot_import_the_local_package(child_run):
    report, _, _, cwd, _ = child_run
    assert report["imported_local_package"] is False
    assert report["cwd"] == cwd


def test_loaded_classes_come_from_the_checkpoint_code(child_run):
    report, _, _, _, hf_home = child_run
    classes = report["classes"]
    assert classes["classifier"].endswith("modeling_wave.WaveForSequenceClassification")
    assert classes["base_from_classifier"].endswith("modeling_wave.WaveModel")
    assert classes["base"].endswith("modeling_wave.WaveModel")
    assert classes["config"].endswith("configuration_wave.WaveConfig")
    for name in classes.values():
        assert name.startswith("transformers_modules."), name  # the dynamic modules copied from the checkpoint
    assert os.path.isdir(os.path.join(hf_home, "modules", "transformers_modules"))


@pytest.mark.parametrize("name", ["logits", "classifier_pooled", "base_last_hidden_state", "base_pooled"])
def test_remote_code_gives_the_same_outputs(child_run, name):
    _, outputs, expected, _, _ = child_run
    torch.testing.assert_close(outputs[name], expected[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("auto_class", ["config", "classifier"])
def test_without_trust_remote_code_the_error_is_clear(child_run, auto_class):
    report, _, _, _, _ = child_run
    message = report["errors_without_trust"][auto_class]
    assert message is not None, f"{auto_class} loaded custom code without trust_remote_code"
    assert "contains custom code which must be executed" in message
    assert "trust_remote_code=True" in message
