"""What `pip install .` gives: the model needs only torch, transformers, safetensors and huggingface-hub; the example
scripts' libraries come with the `examples` extra."""

import importlib.metadata
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

from conftest import REPO_ROOT

MODEL_REQUIREMENTS = {"torch", "transformers", "safetensors", "huggingface-hub"}
EXAMPLE_LIBRARIES = {"datasets", "evaluate", "accelerate", "scikit-learn"}
# Import names (and dist-info prefixes) of what a model-only install lacks.
HIDDEN = ("datasets", "evaluate", "accelerate", "sklearn", "scikit_learn", "wave_examples", "__editable__")


def requirement_names(extra: str | None) -> set[str]:
    names = set()
    for requirement in importlib.metadata.requires("modeling-wave"):
        marker = re.search(r'extra == "([^"]+)"', requirement)
        if (marker.group(1) if marker else None) == extra:
            names.add(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower())
    return names


def test_the_model_requires_only_torch_transformers_safetensors_and_the_hub_client():
    assert requirement_names(None) == MODEL_REQUIREMENTS
    assert EXAMPLE_LIBRARIES <= requirement_names("examples")
    assert "modeling-wave[examples]" in {r.split(";")[0].strip() for r in importlib.metadata.requires("modeling-wave")}


MODEL_ONLY_CHILD = textwrap.dedent(
    """
    import importlib.util
    import sys

    assert all(importlib.util.find_spec(name) is None for name in ("datasets", "evaluate", "accelerate", "sklearn"))
    import torch
    from transformers import AutoModelForSequenceClassification

    from modeling_wave import WaveConfig, WaveForSequenceClassification

    model = WaveForSequenceClassification(WaveConfig(vocab_size=50, hidden_size=8, intermediate_size=0)).eval()
    model.save_pretrained(sys.argv[1])
    reloaded = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(ids).logits, reloaded(ids).logits)
    missing = [name for name in ("datasets", "evaluate", "accelerate", "sklearn") if name in sys.modules]
    assert not missing, missing
    try:  # the training API (imported on first use) needs Trainer, hence Accelerate: it says so
        from modeling_wave import WaveTrainer  # noqa: F401
        raise AssertionError("WaveTrainer imported without accelerate")
    except ImportError as error:
        assert "accelerate" in str(error).lower(), error
    print("model-only install works")
    """
)


def test_the_model_works_without_the_examples_extra(tmp_path):
    """A site-packages without the example libraries (links to everything else), and the checkout's package: build,
    save, reload through the Auto class and run a model."""
    site = tmp_path / "site-packages"
    site.mkdir()
    for entry in sorted(Path(sysconfig.get_paths()["purelib"]).iterdir()):
        if not entry.name.startswith(HIDDEN) and entry.suffix != ".pth":
            (site / entry.name).symlink_to(entry)
    script = tmp_path / "child.py"
    script.write_text(MODEL_ONLY_CHILD)
    env = {"PYTHONPATH": f"{site}:{REPO_ROOT}", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run(
        [sys.executable, "-S", str(script), str(tmp_path / "checkpoint")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "model-only install works" in result.stdout
