"""Tunes as data: the v2 file format, training/validation mixes, padded batches, and corpus
building from raw ABC sources."""
