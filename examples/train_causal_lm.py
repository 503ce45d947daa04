#!/usr/bin/env python
"""A small causal Wave language model next to a same-size GPT-2 on IMDB text: perplexity, generation speed, memory.

    python examples/train_causal_lm.py --data_dir ../shared/data/imdb --output_dir runs/causal-lm [--quick]

Both models get the same tokenizer (BERT uncased WordPiece), the same blocks of text in the same order, the same
optimiser, schedule and number of steps:

- `WaveForCausalLM`: the causal wave, in which token t sees G_t = sqrt(running sum of squares over tokens 1..t)
  (paper Eqs. 1-2 over the prefix), sinusoidal positions (no length limit), the tied language-model head.
- `GPT2LMHeadModel`, randomly initialised, with the same width, depth and feed-forward width (its attention has
  4 d^2 parameters per layer where the wave has 4 d^2 + 3 d in its projection and readout).

Texts: the reviews of the IMDB *training* split, joined with [SEP] and cut into blocks of `block_size` tokens; 20% of
the split is held out (seeded, as everywhere in the examples) and gives the validation perplexity. Both models are
saved with the tokenizer they were trained with (`causal_lm_tokenizer`: no [CLS] ... [SEP] around a text, [SEP] the
end of a review), so `pipeline("text-generation", model="runs/causal-lm/wave")` prompts them as they were trained. The test set is
not used. Then each model generates 1k..16k tokens (greedy, batch 1, interleaved model by model so that machine noise
hits both alike): tokens per second and the bytes its cache holds at the end. The Wave cache is per layer two
running sums, (1, 2d); GPT-2's key/value cache grows with every token. Results go to `output_dir/results.json`.

`--quick` trains tiny models for a few steps and generates a few tokens: it checks that everything runs (the tests
use it); its numbers mean nothing.

Full run (d = 256, 2 layers, feed-forward 1,024, 1,000 steps of 16 blocks x 128 tokens for each model, then
1k, 2k, 4k, 8k and 16k generated tokens each). On two CPU threads a training step takes 1.2-1.4 s (the 256 x 30,522
vocabulary projection dominates both models): about 45 minutes of training, then about 9 minutes of generation.
The README's run: 300 steps and 500 validation reviews (`--max_steps 300 --max_eval_samples 500`), 22 minutes.

    python examples/train_causal_lm.py --data_dir ../shared/data/imdb --output_dir runs/causal-lm
"""

import copy
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import processors
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from modeling_wave import WaveConfig, WaveForCausalLM
from wave_examples import option
from wave_examples.arguments import WaveSizeArguments, run_settings, start_experiment, write_results
from wave_examples.data import load_raw_splits, load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class CausalLMArguments(WaveSizeArguments):
    """The two models (GPT-2 of the Wave Network's size), the shared training budget and the generation lengths."""

    output_dir: str = option("runs/causal-lm", "Where the models and results.json go.")
    num_hidden_layers: int = option(2, "Layers of both models.")
    num_attention_heads: int = option(4, "GPT-2's attention heads.")
    block_size: int = option(128, "Tokens per training block.")
    max_steps: int = option(1000, "Training steps, the same for both models.")
    batch_size: int = option(16, "Blocks per step.")
    learning_rate: float = option(1e-3, "Peak learning rate of both models.")
    generation_lengths: str = option("1024,2048,4096,8192,16384", "Comma-separated numbers of tokens to generate.")
    prompt_length: int = option(16, "Prompt tokens before generation.")


QUICK = dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64, block_size=32, max_steps=3, batch_size=4)
QUICK.update(generation_lengths="8,16", prompt_length=4)
QUICK_DATA = dict(max_train_samples=24, max_eval_samples=8)


def causal_lm_tokenizer(tokenizer):
    """BERT's WordPiece as a left-to-right model reads it: the training stream is `review [SEP] review [SEP] ...`,
    so a text gets no [CLS] ... [SEP] around it (BERT's post-processor is dropped), [SEP] is the end-of-text token
    at which generation stops, and prompts are padded on the left for batched generation. Saved next to a model,
    it makes `pipeline("text-generation")` tokenize a prompt the way the training texts were."""
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")  # no special tokens
    backend.no_truncation()  # the call decides (a review has no length limit here)
    backend.no_padding()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=tokenizer.unk_token,
        pad_token=tokenizer.pad_token,
        eos_token=tokenizer.sep_token,
        sep_token=tokenizer.sep_token,
        model_max_length=tokenizer.model_max_length,
        padding_side="left",
    )


def text_blocks(texts, tokenizer, block_size: int) -> list[dict]:
    """All texts as one token stream ([SEP] between reviews), cut into full blocks (the tail is dropped)."""
    ids = []
    for encoded in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]:  # no length limit
        ids += encoded + [tokenizer.eos_token_id]
    count = len(ids) // block_size
    blocks = torch.tensor(ids[: count * block_size]).view(count, block_size)  # (N, block_size)
    return [{"input_ids": block, "labels": block} for block in blocks]


def build_models(args: CausalLMArguments, tokenizer, longest: int) -> dict:
    set_seed(args.seed)
    wave = WaveForCausalLM(
        WaveConfig(
            vocab_size=len(tokenizer),
            hidden_size=args.hidden_size,
            num_hidden_layers=args.num_hidden_layers,
            intermediate_size=args.intermediate_size,
            wave_mode=args.wave_mode,
            position_embedding_type="sinusoidal",  # generation runs far beyond the training blocks
            pad_token_id=tokenizer.pad_token_id,
            is_decoder=True,
        )
    )
    wave.generation_config.eos_token_id = tokenizer.eos_token_id  # [SEP] ends every review in the training stream
    wave.generation_config.pad_token_id = tokenizer.pad_token_id
    set_seed(args.seed)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=longest,  # learned positions must cover the longest generation
            n_embd=args.hidden_size,
            n_layer=args.num_hidden_layers,
            n_head=args.num_attention_heads,
            n_inner=args.intermediate_size,
            bos_token_id=tokenizer.eos_token_id,  # one end-of-text token for both, as GPT-2's <|endoftext|>
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return {"wave": wave, "gpt2": gpt2}


def train(name: str, model, args: CausalLMArguments, blocks: dict, tokenizer, output_dir: Path) -> dict:
    set_seed(args.seed)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(output_dir / name),
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, args.max_steps // 20),
            weight_decay=0.01,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            logging_steps=max(1, args.max_steps // 10),
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            data_seed=args.seed,
            disable_tqdm=True,
        ),
        train_dataset=blocks["train"],
        eval_dataset=blocks["validation"],
        data_collator=default_data_collator,
        processing_class=tokenizer,  # saved with the model
    )
    train_metrics = trainer.train().metrics
    eval_loss = trainer.evaluate()["eval_loss"]  # every block is full, so this is the mean over all tokens
    trainer.save_model(str(output_dir / name))
    return {
        f"{name}_parameters": model.num_parameters(),
        f"{name}_non_embedding_parameters": model.num_parameters(exclude_embeddings=True),
        f"{name}_train_loss": train_metrics["train_loss"],
        f"{name}_train_seconds": train_metrics["train_runtime"],
        f"{name}_validation_loss": eval_loss,
        f"{name}_validation_perplexity": math.exp(eval_loss),
    }


def cache_bytes(cache) -> int:
    """Bytes held by a generation cache: a `WaveCache`, or the keys and values of a Transformers `Cache`."""
    if hasattr(cache, "nbytes"):
        return cache.nbytes()
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


@torch.no_grad()
def generation_benchmark(models: dict, prompt: torch.Tensor, lengths: list[int]) -> list[dict]:
    """Greedy generation of exactly n tokens per model, interleaved (length by length, model by model)."""
    rows = []
    for n in lengths:
        for name, model in models.items():
            model.eval()
            start = time.perf_counter()
            output = model.generate(
                prompt.to(model.device),  # Trainer left the model on the GPU, if there is one
                attention_mask=torch.ones_like(prompt, device=model.device),
                max_new_tokens=n,
                min_new_tokens=n,  # no early stop at an end-of-text token
                do_sample=False,
                return_dict_in_generate=True,
            )
            seconds = time.perf_counter() - start
            generated = output.sequences.shape[1] - prompt.shape[1]
            rows.append(
                {
                    "model": name,
                    "new_tokens": generated,
                    "seconds": seconds,
                    "tokens_per_second": generated / seconds,
                    "cache_bytes": cache_bytes(output.cache),
                }
            )
            logger.info(
                f"{name}: {generated} tokens in {seconds:.1f} s ({generated / seconds:.0f}/s), cache "
                f"{rows[-1]['cache_bytes']:,} bytes"
            )
    return rows


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    data_args, args, output_dir = start_experiment(CausalLMArguments, argv, QUICK, QUICK_DATA)
    torch.manual_seed(args.seed)

    raw, _ = load_raw_splits(data_args, seed=args.seed)
    tokenizer = causal_lm_tokenizer(load_tokenizer())
    blocks = {split: text_blocks(raw[split]["text"], tokenizer, args.block_size) for split in ("train", "validation")}
    lengths = [int(n) for n in args.generation_lengths.split(",")]
    models = build_models(args, tokenizer, longest=max(args.block_size, args.prompt_length + max(lengths)))

    results = run_settings(args)
    results.update({f"{split}_blocks": len(data) for split, data in blocks.items()})
    for name, model in models.items():
        results.update(train(name, model, args, blocks, tokenizer, output_dir))

    prompt = blocks["validation"][0]["input_ids"][: args.prompt_length].unsqueeze(0)  # (1, prompt_length)
    results["generation"] = generation_benchmark(models, prompt, lengths)
    for name in models:
        rows = [row for row in results["generation"] if row["model"] == name]
        results[f"{name}_median_tokens_per_second"] = statistics.median(row["tokens_per_second"] for row in rows)

    write_results(output_dir, results)
    logger.info(
        f"Validation perplexity: Wave {results['wave_validation_perplexity']:.1f}, GPT-2 "
        f"{results['gpt2_validation_perplexity']:.1f} ({results['wave_non_embedding_parameters']:,} and "
        f"{results['gpt2_non_embedding_parameters']:,} non-embedding parameters, {args.max_steps} steps)"
    )
    return results


if __name__ == "__main__":
    main()
