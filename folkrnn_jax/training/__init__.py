"""Training: state and optimiser, loss, jit-compiled steps, the train-and-evaluate loop,
checkpoints, metrics, data parallelism and sweeps."""
