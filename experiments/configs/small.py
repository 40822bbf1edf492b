"""A mid-size model for a CPU: v2's three layers at half the width (3 x 256), dropout 0.3,
batch 32, 40 epochs of the default corpus. Good enough for measuring what sampled tunes look
like without a GPU; its training time, loss and share of valid tunes are in
``benchmarks/RESULTS.md``."""

import ml_collections

from experiments.configs import v2


def get_config() -> ml_collections.ConfigDict:
    config = v2.get_config()
    config.hidden_size = 256
    config.dropout_rate = 0.3
    config.batch_size = 32
    config.num_epochs = 40
    config.max_tune_length = 600
    config.log_every_steps = 100
    config.checkpoint_every_steps = 500
    return config
