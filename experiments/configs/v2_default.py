"""folk-rnn v2 itself, as this project ships it: the v2 architecture (3 x 512 LSTM, one-hot 137,
5,599,881 parameters) and v2's recipe (RMSprop 0.003, dropout 0.5, batch 64, gradient clipping
5) trained on the real v2 tunes of ``../shared/data/data_v2_first5000.txt`` (kept outside this
repository; see ``data/README.md``).

Differences from ``v2.py`` and why:
- the learning rate decays x0.93 per epoch from epoch 12 (v2: x0.97 from epoch 20), to fit the
  tens of epochs a CPU run gets rather than 100;
- identical token sequences in the file are kept once, so no validation tune is a training tune;
- training stops when the validation NLL (dropout off) has not improved for 10 epochs.
"""

import ml_collections

from experiments.configs import v2

V2_TUNES = "../shared/data/data_v2_first5000.txt"


def get_config() -> ml_collections.ConfigDict:
    config = v2.get_config()
    config.data_path = V2_TUNES
    config.drop_duplicates = True
    config.num_epochs = 60
    config.lr_decay = 0.93
    config.lr_decay_after_epochs = 12
    config.early_stopping_epochs = 10
    config.early_stopping_metric = "valid_loss"
    config.log_every_steps = 25
    config.checkpoint_every_steps = 100
    return config
