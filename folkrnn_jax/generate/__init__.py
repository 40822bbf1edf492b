"""Generating tunes: prefixes, sampling options, the batched samplers, structure-constrained
sampling and beam search."""
