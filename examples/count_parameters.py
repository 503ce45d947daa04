#!/usr/bin/env python
"""Parameter counts of the model presets, with and without the embedding tables, as a Markdown table. The n-gram
tables (hashed n-gram embeddings and the wide part's weights, `ngram_sizes` / `wide_ngram_sizes`) have a column of
their own.

    python examples/count_parameters.py [configuration/wave-*.json ...]
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

from modeling_wave import WaveConfig, WaveForSequenceClassification


def main(paths: list[str]):
    paths = paths or sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "configuration" / "models").glob("wave-*.json"))
    print("| preset | d | layers | FFN width | parameters | without embeddings | n-gram tables |")
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        config = WaveConfig.from_pretrained(REPO_ROOT / path)
        model = WaveForSequenceClassification(config)
        ngram_tables = sum(
            p.numel() for name, p in model.named_parameters() if "ngram_embeddings" in name or name.startswith("wide.")
        )
        print(
            f"| `{path}` | {config.hidden_size} | {config.num_hidden_layers} | {config.intermediate_size} | "
            f"{model.num_parameters():,} | {model.num_parameters(exclude_embeddings=True):,} | {ngram_tables:,} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
