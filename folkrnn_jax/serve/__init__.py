"""The composer: a local web app over the sampler (``python -m experiments.serve``)."""
