"""What the analyses write (docs/analysis.md): JSON files, Markdown tables and PNG figures."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after matplotlib.use
import numpy as np

# One colour per model in every plot.
COLORS = {
    "wave-modulation": "tab:blue",
    "wave-interference": "tab:orange",
    "bert-1layer": "tab:green",
    "minilm": "tab:red",
}


def output_dir(settings: dict) -> Path:
    folder = Path(settings["output_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, payload: dict):
    path.write_text(json.dumps(payload, indent=1, default=_jsonable))
    print(f"wrote {path}", flush=True)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_markdown(path: Path, text: str):
    path.write_text(text)
    print(f"wrote {path}", flush=True)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(figure, path: Path):
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"wrote {path}", flush=True)


def moving_average(values, window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def budget_label(settings: dict) -> str:
    quick = "QUICK RUN (tiny budget, not a result): " if settings["quick"] else ""
    return (
        f"{quick}IMDB, {settings['max_steps']} batches of {settings['batch_size']}, "
        f"length {settings['max_seq_length']}, seed {settings['seed']}"
    )
