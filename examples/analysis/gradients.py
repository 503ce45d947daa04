#!/usr/bin/env python
"""Gradients (Token2Wave, arXiv 2411.06989): per-batch gradient norms of the text vector, of the input token
embeddings and of the classifier, for the Wave Network and the Transformer baselines.

    python examples/analysis/gradients.py [--quick] [--data_dir ../shared/data/imdb] [--models a,b,...]

The models and batches are those of convergence.py (500 batches of 32 IMDB reviews, length 256). The model code
is untouched: a `TrainerCallback`, `wave_examples.analysis_gradients.GradientRecorder`, hooks the model and sees
the gradient of the batch-mean loss during each backward pass:

- pooled: the text vector handed to the classifier (Wave: the masked mean of the last layer; BERT / MiniLM: the
  pooler output, tanh(W h_[CLS])), a (batch, d) tensor;
- embeddings: the word-embedding output for every token of every text, (batch, length, d): the whole input text;
- classifier: the classifier's weight and bias gradients;
- all: every trainable parameter (the norm that gradient clipping sees).

Norms are L2 norms over the whole tensor (all texts of the batch), before clipping. Writes gradients.json (every
series), gradients.md (median and spread per model and quantity) and gradients.png (one panel per quantity).
"""

import sys

from wave_examples import analysis
from wave_examples.analysis_gradients import GradientRecorder, model_result, write_outputs


def main(argv: list[str] | None = None) -> dict:
    settings = analysis.parse_settings("gradients", __doc__, argv)
    data = analysis.AnalysisData(settings, analysis.training_samples(settings), settings["eval_samples"])
    results = {}
    for name in settings["models"]:
        spec = settings["model_specs"][name]
        model = analysis.build_model(name, settings, data.num_labels)
        recorder = GradientRecorder(model)
        history = analysis.train(model, data, settings, spec["learning_rate"], callbacks=[recorder], label=name)
        results[name] = model_result(spec, model, history, recorder)
        del model
    return write_outputs(settings, analysis.output_dir(settings), len(data.test), results)


if __name__ == "__main__":
    main(sys.argv[1:])
