"""The composer: a local web app that draws folk tunes as you watch.

python -m experiments.serve                       # the shipped default model, http://127.0.0.1:8000
python -m experiments.serve --workdir=runs/tiny --workdir=runs/small --port=8080

Open the address it prints. The JSON API is described at /openapi.json. The server binds to
127.0.0.1 unless --host says otherwise, and answers only requests addressed to 127.0.0.1,
localhost or --host (a page elsewhere rebound by DNS to this machine is refused); tunebook
entries go to --data_dir.
"""

import os

import uvicorn
from absl import flags, logging

from experiments import cli
from folkrnn_jax.serve import engine
from folkrnn_jax.serve.app import ServerOptions, create_app

FLAGS = flags.FLAGS
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine only).")
flags.DEFINE_integer("port", 8000, "Port to listen on.")
flags.DEFINE_multi_string("workdir", [], "A run directory to offer as a model (named after the "
                          "folder); repeat the flag for several.")
flags.DEFINE_string("default_model", None, "Folder of the shipped default model (default: models/default "
                    "in the repository; offered as 'default' when its config.json exists).")
flags.DEFINE_string("data_dir", os.path.join("~", ".folkrnn_jax"), "Where the tunebook (SQLite) is kept.")
flags.DEFINE_integer("slots", 32, "Batch rows per model: tunes sampled at once (more wait their turn).")
flags.DEFINE_integer("max_tunes_per_request", 8, "Most tunes one request may ask for (vary, /api/tunes).")
flags.DEFINE_integer("max_prefix_tokens", 256, "Longest prefix, in tokens.")
flags.DEFINE_integer("max_length", 1000, "Longest tune, in tokens.")


def main(argv):
    del argv
    limits = engine.Limits(max_prefix_tokens=FLAGS.max_prefix_tokens, max_length=FLAGS.max_length,
                           max_tunes_per_request=FLAGS.max_tunes_per_request)
    models = engine.load_models(FLAGS.workdir, FLAGS.default_model)
    options = ServerOptions(data_dir=os.path.expanduser(FLAGS.data_dir), limits=limits, slots=FLAGS.slots,
                            hosts=("127.0.0.1", "localhost", FLAGS.host))
    app = create_app(models, options)
    logging.info("models: %s; tunebook in %s", ", ".join(m.name for m in models), options.data_dir)
    print(f"composer at http://{FLAGS.host}:{FLAGS.port}/ (API description at /openapi.json)", flush=True)
    uvicorn.run(app, host=FLAGS.host, port=FLAGS.port, log_level="warning")


if __name__ == "__main__":
    cli.run(main)
