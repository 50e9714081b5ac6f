"""The `make demo` pipeline: an embedded synthetic emotional-speech corpus, pretraining, extraction, probing."""
