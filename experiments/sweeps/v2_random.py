"""Random search around the v2 recipe: 8 runs over learning rate, dropout and layer width."""


def get_sweep():
    return {
        "random": {
            "learning_rate": {"log_uniform": [1e-3, 1e-2]},
            "dropout_rate": {"uniform": [0.2, 0.6]},
            "hidden_size": [256, 512],
        },
        "num_runs": 8,
        "seed": 0,
    }
