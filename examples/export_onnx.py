#!/usr/bin/env python
"""Deploy a trained Wave classifier on a CPU: ONNX export, dynamic int8 quantization, and what each costs.

    python examples/export_onnx.py --model_name_or_path outputs/imdb-modulation --data_dir ../shared/data/imdb \
        --output_dir runs/deploy [--seq_lengths 128,256,512] [--max_seq_length 512] [--quick]

`outputs/imdb-modulation` is what `examples/run_classification.py configuration/train/imdb-modulation.json` saves (model
and tokenizer); any saved sequence classifier works.

1. Export: `torch.onnx.export(..., dynamo=True)` with the batch size and the length dynamic, then a check of ONNX
   Runtime against PyTorch on a batch of another size and length, padded on the right and on the left (the largest
   logit difference must stay below `--atol`, or the script stops).
2. Dynamic int8: ONNX Runtime's own `quantize_dynamic` turns every matrix product of the exported graph into an int8
   one (`MatMulInteger`: weights stored in int8, activations quantized per batch on the fly); the wave statistics
   (Eqs. 1-2) stay in float32. (PyTorch's own dynamic quantization, used before, is deprecated:
   pytorch/ao#2259.)
3. A CPU inference table, one row per backend (PyTorch float32, ONNX Runtime float32, ONNX Runtime int8 dynamic):
   test texts per second at each of `seq_lengths` (a batch of `batch_size` test reviews, each cut or padded to
   exactly that length; backends interleaved, median of `repeats`), accuracy on the test split (texts truncated to
   `max_seq_length`, padded per batch), and how often the predictions equal float32's.

Both runtimes get the same number of threads (`torch.get_num_threads()`). Outputs in `output_dir`: `model.onnx`,
`results.json` and `deployment.md` (the table, also printed). `--quick` times one repeat at lengths 16 and 32 on a few
test texts: it checks that everything runs (the tests use it); its numbers mean nothing.
"""

import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn
from transformers import AutoModelForSequenceClassification

import modeling_wave  # noqa: F401  (registers the Wave classes with the Auto classes)
from wave_examples import option
from wave_examples.arguments import ExperimentArguments, run_settings, start_experiment, write_results
from wave_examples.data import load_raw_splits, load_tokenizer

logger = logging.getLogger(__name__)

BACKENDS = ("PyTorch float32", "ONNX Runtime float32", "ONNX Runtime int8 dynamic")


@dataclass
class ExportArguments(ExperimentArguments):
    """The checkpoint, the lengths to time and where the results go."""

    model_name_or_path: str = option("outputs/imdb-modulation", "A saved sequence classifier (run_classification's).")
    output_dir: str = option("runs/deploy", "Where model.onnx and the results go.")
    tokenizer_name: str | None = option(None, "Tokenizer (default: the checkpoint's).")
    seq_lengths: str = option("128,256,512", "Comma-separated lengths to time.")
    batch_size: int = option(32, "Texts per batch, timing and accuracy.")
    repeats: int = option(5, "Timed rounds per length (the median is reported).")
    atol: float = option(1e-4, "Largest ONNX Runtime vs PyTorch logit difference allowed.")


QUICK = dict(seq_lengths="16,32", batch_size=8, repeats=1)
QUICK_DATA = dict(max_seq_length=64, max_train_samples=8, max_eval_samples=8, max_test_samples=24)


class LogitsOnly(nn.Module):
    """The classifier as a graph with two inputs and one output: token ids and mask in, logits out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, num_labels)


def export_onnx(model, path: Path) -> Path:
    """`model` as ONNX (dynamo exporter), with the batch size and the sequence length left dynamic."""
    example = torch.randint(1, model.config.vocab_size, (2, 8))
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    dynamic = {0: batch, 1: length}
    torch.onnx.export(
        LogitsOnly(model).eval(),  # no dropout in the graph
        (example, torch.ones_like(example)),
        str(path),
        dynamo=True,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": dynamic, "attention_mask": dynamic},
        external_data=False,  # one self-contained file (weights inside): a Wave classifier is far below 2 GB
    )
    return path


def onnx_session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as PyTorch
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_int8(path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of the exported graph: `<name>-int8.onnx` beside it."""
    quantized = path.with_name(f"{path.stem}-int8.onnx")
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
    return quantized


def predictors(model, session, int8_session) -> dict:
    """One function per backend: (input_ids, attention_mask) as int64 arrays -> logits (B, num_labels)."""

    @torch.inference_mode()
    def in_torch(input_ids, attention_mask):
        inputs = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        return model(**inputs).logits.float().numpy()

    def in_onnx_runtime(runtime_session):
        def predict(input_ids, attention_mask):
            return runtime_session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

        return predict

    return dict(zip(BACKENDS, (in_torch, in_onnx_runtime(session), in_onnx_runtime(int8_session))))


def encode(tokenizer, texts, **kwargs) -> dict:
    encoded = tokenizer(list(texts), return_tensors="np", **kwargs)
    return {key: encoded[key].astype(np.int64) for key in ("input_ids", "attention_mask")}


def check_onnx(model, session, tokenizer, texts, atol: float) -> float:
    """Largest |ONNX Runtime - PyTorch| logit over a batch that is neither the export's size nor its length, padded
    on the right and, separately, on the left; raises if it exceeds `atol`."""
    worst = 0.0
    for side in ("right", "left"):
        tokenizer.padding_side = side
        batch = encode(tokenizer, texts, padding=True, truncation=True, max_length=48)
        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
        worst = max(worst, float(np.abs(session.run(["logits"], batch)[0] - expected).max()))
    tokenizer.padding_side = "right"
    if not worst <= atol:
        raise RuntimeError(f"ONNX Runtime's logits differ from PyTorch's by {worst:.2e} (more than --atol {atol}).")
    return worst


def throughput(predict_by_backend: dict, tokenizer, texts, lengths, repeats: int) -> dict:
    """Texts per second of each backend at each length: every text cut or padded to exactly that length."""
    rates = {name: {} for name in predict_by_backend}
    for length in lengths:
        batch = encode(tokenizer, texts, padding="max_length", truncation=True, max_length=length)
        seconds = {name: [] for name in predict_by_backend}
        for name, predict in predict_by_backend.items():
            predict(**batch)  # warm-up (ONNX Runtime plans its memory on the first run of a shape)
        for _ in range(repeats):
            for name, predict in predict_by_backend.items():  # interleaved: machine noise hits every backend
                started = time.perf_counter()
                predict(**batch)
                seconds[name].append(time.perf_counter() - started)
        for name in predict_by_backend:
            rates[name][length] = len(texts) / statistics.median(seconds[name])
    return rates


def accuracy(predict_by_backend: dict, tokenizer, texts, labels, max_length: int, batch_size: int) -> dict:
    """Accuracy of each backend on the test texts, and the share of its predictions equal to float32's."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together: less padding
    predictions = {name: np.empty(len(texts), dtype=np.int64) for name in predict_by_backend}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = encode(tokenizer, [texts[i] for i in rows], padding=True, truncation=True, max_length=max_length)
        for name, predict in predict_by_backend.items():
            predictions[name][rows] = predict(**batch).argmax(-1)
    labels = np.asarray(labels)
    reference = predictions[BACKENDS[0]]
    return {
        name: {"accuracy": float((p == labels).mean()), "agreement_with_float32": float((p == reference).mean())}
        for name, p in predictions.items()
    }


def markdown_table(results: dict) -> str:
    lengths = results["seq_lengths"]
    header = ["backend", *[f"seq/s at {n}" for n in lengths], "test accuracy", "same prediction as float32"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in BACKENDS:
        row = results["backends"][name]
        speeds = [f"{row['sequences_per_second'][str(n)]:,.1f}" for n in lengths]
        lines.append(
            f"| {name} | " + " | ".join(speeds) + f" | {100 * row['accuracy']:.2f}% | "
            f"{100 * row['agreement_with_float32']:.2f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    data_args, args, output_dir = start_experiment(ExportArguments, argv, QUICK, QUICK_DATA)

    model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path).to("cpu").eval()
    tokenizer = load_tokenizer(args.tokenizer_name or args.model_name_or_path)
    lengths = [int(n) for n in args.seq_lengths.split(",")]
    if model.config.position_embedding_type == "learned":
        too_long = [n for n in lengths + [data_args.max_seq_length] if n > model.config.max_position_embeddings]
        if too_long:
            raise ValueError(
                f"The checkpoint has learned positions for {model.config.max_position_embeddings} tokens; "
                f"lengths {too_long} are longer: lower --seq_lengths / --max_seq_length."
            )
    raw, _ = load_raw_splits(data_args, seed=args.seed)
    test = raw["test"]

    onnx_path = export_onnx(model, output_dir / "model.onnx")
    session = onnx_session(onnx_path)
    onnx_difference = check_onnx(model, session, tokenizer, test["text"][:5], args.atol)
    logger.info(f"ONNX Runtime agrees with PyTorch to {onnx_difference:.1e} on a new batch size and length.")

    int8_path = quantize_int8(onnx_path)
    predict_by_backend = predictors(model, session, onnx_session(int8_path))
    rates = throughput(predict_by_backend, tokenizer, test["text"][: args.batch_size], lengths, args.repeats)
    scores = accuracy(
        predict_by_backend, tokenizer, test["text"], test["label"], data_args.max_seq_length, args.batch_size
    )
    results = {
        **run_settings(args, leave_out=("seq_lengths",)),
        "seq_lengths": lengths,
        "max_seq_length": data_args.max_seq_length,
        "test_samples": len(test),
        "threads": torch.get_num_threads(),
        "onnx_max_abs_difference": onnx_difference,
        "onnx_megabytes": onnx_path.stat().st_size / 2**20,
        "onnx_int8_megabytes": int8_path.stat().st_size / 2**20,
        "backends": {
            name: {"sequences_per_second": {str(n): rates[name][n] for n in lengths}, **scores[name]}
            for name in BACKENDS
        },
    }
    write_results(output_dir, results)
    table = markdown_table(results)
    (output_dir / "deployment.md").write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
