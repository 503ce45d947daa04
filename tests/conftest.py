"""Test-wide settings: nothing may reach the Hub, and every cache lives in a temporary folder."""

import csv
import os
import tempfile
from pathlib import Path

import pytest

# Set before transformers / huggingface_hub / datasets are imported anywhere in the test session.
_HF_HOME = tempfile.mkdtemp(prefix="wave-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]

IMDB_DIR = Path(os.environ.get("WAVE_IMDB_DIR", REPO_ROOT.parent / "shared" / "data" / "imdb"))
SHARED_DATA_DIR = Path(os.environ.get("WAVE_SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def shared_data_dir(name: str) -> Path:
    """`../shared/data/<name>` (train.csv and test.csv), or `$WAVE_<NAME>_DIR`. CI must have it: there a missing copy
    fails the test instead of skipping it."""
    import pytest

    variable = f"WAVE_{name.upper()}_DIR"
    folder = Path(os.environ.get(variable, SHARED_DATA_DIR / name))
    if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
        return folder
    message = f"{name} is not at {folder} (train.csv, test.csv); set {variable} or put ../shared/data/{name} there."
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)

# What every saved config.json must map (the rule: each Auto class to its Wave class), written out once for the tests.
EXPECTED_AUTO_MAP = {
    "AutoConfig": "configuration_wave.WaveConfig",
    "AutoModel": "modeling_wave.WaveModel",
    **{
        f"AutoModelFor{task}": f"modeling_wave.WaveFor{task}"
        for task in ("SequenceClassification", "TokenClassification", "MaskedLM", "CausalLM")
    },
}


@pytest.fixture(scope="module")
def imdb_sample(tmp_path_factory):
    """A small IMDB-shaped data folder (the first reviews of each split), so the examples run in seconds."""
    folder = tmp_path_factory.mktemp("imdb-sample")
    for split, rows in (("train", 160), ("test", 80)):
        with open(IMDB_DIR / f"{split}.csv", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header, body = next(reader), list(reader)
        # negatives first, then positives: alternate between the two ends for both labels
        picked = [body[i // 2] if i % 2 == 0 else body[-1 - i // 2] for i in range(rows)]
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, *picked])
    return folder
