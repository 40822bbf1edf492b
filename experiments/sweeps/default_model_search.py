"""Random search for the default model's recipe on this CPU: width, dropout, learning rate and
batch size, each run given the same training time (``--config.max_train_seconds``, compilation not
counted), so that the runs compare what a fixed budget of CPU time buys. Use with
``configs/default_model.py``."""


def get_sweep():
    return {
        "random": {
            "hidden_size": [256, 384, 512],
            "dropout_rate": {"uniform": [0.1, 0.5]},
            "learning_rate": {"log_uniform": [1.5e-3, 6e-3]},
            "batch_size": [32, 64],
        },
        "num_runs": 4,
        "seed": 2,
    }
