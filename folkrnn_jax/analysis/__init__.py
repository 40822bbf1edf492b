"""Looking at a trained run: statistics of tunes, novelty, per-tune scores, probes of the
network's insides, the evaluation report and its plots."""
