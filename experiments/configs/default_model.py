"""The shipped default model: v2's three LSTM layers, trained on real v2 tunes and the folk
corpus together (``../shared/data/data_v2_first5000.txt``, kept outside the repository, and
``data/folk_corpus.txt``, identical token
sequences kept once, a validation split from each source, reported per source).

The width, dropout, learning rate and batch size were chosen by measurement on a 2-core CPU
(``experiments/sweeps/default_model_search.py``); the evidence is in ``models/README.md``.
"""

import ml_collections

from experiments.configs import v2


def get_config() -> ml_collections.ConfigDict:
    config = v2.get_config()
    config.data_path = "../shared/data/data_v2_first5000.txt,data/folk_corpus.txt"
    config.hidden_size = 256
    config.dropout_rate = 0.3
    config.learning_rate = 0.003
    config.batch_size = 64
    config.num_epochs = 60
    # Anneal sooner than v2 (x0.97 after epoch 20): a CPU run gets tens of epochs, not 100.
    config.lr_decay = 0.9
    config.lr_decay_after_epochs = 10
    config.log_every_steps = 100
    config.checkpoint_every_steps = 250
    return config
