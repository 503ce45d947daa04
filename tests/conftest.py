"""Test-wide settings: nothing may reach the Hub, and every cache lives in a temporary folder."""

import os
import tempfile
from pathlib import Path

# Set before transformers / huggingface_hub / datasets are imported anywhere in the test session.
_HF_HOME = tempfile.mkdtemp(prefix="wave-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]

IMDB_DIR = Path(os.environ.get("WAVE_IMDB_DIR", REPO_ROOT.parent / "shared" / "data" / "imdb"))

# What every saved config.json must map (the rule: each Auto class to its Wave class), written out once for the tests.
EXPECTED_AUTO_MAP = {
    "AutoConfig": "configuration_wave.WaveConfig",
    "AutoModel": "modeling_wave.WaveModel",
    **{
        f"AutoModelFor{task}": f"modeling_wave.WaveFor{task}"
        for task in ("SequenceClassification", "TokenClassification", "MaskedLM", "CausalLM")
    },
}
