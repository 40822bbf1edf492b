"""The folk-rnn v2 network: the LSTM with its hand-written backward pass, the Flax module, and
the original Theano pickles."""
