"""What the example scripts in `examples/` share: data loading, argument presets, model building, the
classification Trainer, the analyses' helpers, the benchmark's parts and the FLOP and activation model.

It is installed with the project (`pip install -e ".[examples]"`) so that the scripts import it like any library;
its dependencies (`datasets`, `evaluate`, `accelerate`, ...) come with the `examples` extra, not with the model.
"""

from dataclasses import field
from pathlib import Path

# The checkout this package was installed from (editable install); presets in `configuration/` are relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_path(path: str | Path) -> Path:
    """Paths in presets are written relative to the repository; accept them from any working directory.

    Raises `FileNotFoundError` naming both places looked in when the path is in neither.
    """
    path = Path(path)
    for candidate in (path, REPO_ROOT / path):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{path} does not exist (looked in the working directory and in {REPO_ROOT}).")


def option(default, help_text: str):
    """A dataclass field with its command-line help, as `HfArgumentParser` shows it in `--help`."""
    return field(default=default, metadata={"help": help_text})
