"""A small model that trains in a minute or two on a CPU: for the quick start and tests."""

import ml_collections

from experiments.configs import v2


def get_config() -> ml_collections.ConfigDict:
    config = v2.get_config()
    config.num_layers = 2
    config.hidden_size = 128
    config.dropout_rate = 0.1
    config.batch_size = 32
    config.num_epochs = 1
    config.num_train_steps = 500
    config.lr_decay = 1.0
    config.max_tune_length = 400
    config.log_every_steps = 25
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    return config
