"""Grid: two learning rates x two seeds (4 runs) of whatever base config is given."""


def get_sweep():
    return {"grid": {"learning_rate": [0.003, 0.01], "seed": [0, 1]}}
