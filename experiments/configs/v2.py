"""folk-rnn v2 as configured (config5): 3x512 LSTM, dropout 0.5, RMSprop 0.003 decaying x0.97
per epoch after epoch 20, batch 64, 100 epochs, gradient clipping 5, validation fraction 0.05.

Clipping here is global-norm clipping; the original's per-gate clipping and its other quirks
are in ``v2_as_trained.py``.
"""

import ml_collections

from folkrnn_jax.model import folkrnn


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Data
    config.data_path = "data/folk_corpus.txt"
    config.valid_fraction = 0.05
    config.split_seed = 42
    config.drop_duplicates = False  # True: repeated token sequences kept once before the split
    config.max_tune_length = 0  # 0 keeps every tune; >0 drops longer ones (tokens incl. <s>, </s>)
    # Model: num_layers, hidden_size, dropout_rate, init_scale, learn_initial_state,
    # gate_grad_clip, matmul_dtype, unroll, remat, fused_backward, lstm_schedule, at folk-rnn
    # v2's values: the defaults of the FolkRNN fields, where each is explained
    # (folkrnn_jax.model.folkrnn.FolkRNN).
    config.update(folkrnn.model_defaults())
    # Optimisation
    config.batch_size = 64  # rows per batch (packed: rows of packed_length tokens; bucketed: tunes)
    # "packed": tunes end to end in rows of packed_length tokens, the LSTM state reset where
    # each starts, one batch shape (longer tunes in rows 2, 4, ... times as long, batch_size
    # divided as much); "bucketed": one tune per row, rows grouped by length (the original)
    config.batching = "packed"
    config.packed_length = 256
    config.num_epochs = 100
    config.num_train_steps = 0  # >0 overrides num_epochs
    config.max_train_seconds = 0  # >0: stop (with a checkpoint) after this many seconds of training
    # in this invocation, compilation not counted
    config.learning_rate = 0.003
    config.lr_decay = 0.97
    config.lr_decay_after_epochs = 20
    config.rmsprop_decay = 0.9
    config.rmsprop_eps = 1e-6
    config.grad_clip_norm = 5.0
    config.loss_normalization = "token"
    config.eval_dropout = False
    config.early_stopping_epochs = 0  # >0: stop when early_stopping_metric has not improved for so many epochs
    config.early_stopping_metric = "valid_loss"
    config.seed = 0
    # Devices: the batch is sharded over a 'data' mesh axis, parameters replicated.
    config.mesh_shape = 0  # devices to use; 0: all local devices
    config.coordinator_address = ""  # multi-host: "HOST0:PORT" calls jax.distributed.initialize
    config.num_processes = -1  # -1: detected (SLURM, Cloud TPU)
    config.process_id = -1
    # Logging and checkpoints
    config.log_every_steps = 50
    config.eval_every_steps = 0  # 0: evaluate at the end of each epoch and of the run
    config.checkpoint_every_steps = 500
    config.max_checkpoints_to_keep = 3
    return config
