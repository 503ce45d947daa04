#!/usr/bin/env python
"""How evenly each n-gram hash (`config.ngram_hash`) spreads the bigrams of real texts over the buckets.

    python examples/ngram_hash_spread.py --data_dir ../shared/data/imdb [--texts 2000] [--buckets 200000]

For the first `--texts` training texts it counts the distinct bigrams of token ids, the buckets they fill under each
hash, and the buckets a random hash would fill on average, m (1 - exp(-k / m)) for k bigrams in m buckets; and the
share of bigram occurrences whose bucket also holds another bigram. Prints a table and writes `hash_spread.json` and
`hash_spread.md` to `--output_dir`.
"""

import json
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from modeling_wave.modeling_wave import NGRAM_HASH_MULTIPLIERS, hash_ngrams
from wave_examples import option
from wave_examples.arguments import parse_preset_arguments
from wave_examples.arguments import DataArguments
from wave_examples.data import load_raw_splits, load_tokenizer


@dataclass
class SpreadArguments:
    output_dir: str = option("outputs/hash-spread", "Where hash_spread.json and hash_spread.md go.")
    texts: int = option(2000, "How many training texts to hash.")
    buckets: int = option(200_000, "Buckets (the recipe's ngram_buckets).")
    seed: int = option(42, "Seed of the train / validation split (as run_classification).")


def bigram_buckets(token_ids: list[list[int]], buckets: int, method: str) -> dict[tuple[int, int], int]:
    """Each distinct bigram of the texts and its bucket under `method`."""
    found = {}
    for ids in token_ids:
        ids = torch.tensor([ids])
        bucket_ids, exists = hash_ngrams(ids, torch.ones_like(ids, dtype=torch.bool), 2, buckets, method)
        for t in torch.nonzero(exists[0]).flatten().tolist():
            found[(ids[0, t - 1].item(), ids[0, t].item())] = bucket_ids[0, t].item()
    return found


def main(argv: list[str] | None = None) -> list[dict]:
    data_args, args = parse_preset_arguments((DataArguments, SpreadArguments), sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    raw, _ = load_raw_splits(data_args, seed=args.seed)
    texts = raw["train"]["text"][: args.texts]
    token_ids = load_tokenizer()(texts, add_special_tokens=False)["input_ids"]
    occurrences = Counter(pair for ids in token_ids for pair in zip(ids[:-1], ids[1:]))

    rows = []
    for method in NGRAM_HASH_MULTIPLIERS:
        buckets_of = bigram_buckets(token_ids, args.buckets, method)
        bigrams_in = Counter(buckets_of.values())
        shared = sum(n for pair, n in occurrences.items() if bigrams_in[buckets_of[pair]] > 1)
        rows.append({"hash": method, "bigrams": len(buckets_of), "buckets_filled": len(bigrams_in),
                     "occurrences_sharing_a_bucket": shared / sum(occurrences.values())})
    k, m = len(occurrences), args.buckets
    random_filled = m * (1 - math.exp(-k / m))
    random_shared = 1 - math.exp(-(k - 1) / m)  # another of the k - 1 bigrams in the bucket of a given one
    rows.append({"hash": "random (expected)", "bigrams": k, "buckets_filled": random_filled,
                 "occurrences_sharing_a_bucket": random_shared})

    lines = [f"{len(texts):,} training texts, {m:,} buckets", "",
             "| hash | distinct bigrams | buckets filled | bigram occurrences sharing a bucket |", "|---|---|---|---|"]
    lines += [f"| {r['hash']} | {r['bigrams']:,} | {r['buckets_filled']:,.0f} | {100 * r['occurrences_sharing_a_bucket']:.1f}% |"
              for r in rows]
    table = "\n".join(lines) + "\n"
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "hash_spread.json").write_text(json.dumps(rows, indent=2) + "\n")
    (output_dir / "hash_spread.md").write_text(table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
