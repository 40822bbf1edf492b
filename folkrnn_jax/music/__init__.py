"""Music without JAX: the v2 vocabulary, pitch and rhythm, structure checks, ABC in and out,
transposition, MIDI and the ABC command-line tools. Nothing here imports jax, flax or optax."""
