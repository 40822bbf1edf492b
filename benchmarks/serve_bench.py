"""The composer server under many clients: N concurrent clients on loopback, each streaming its
own tunes from /api/stream; tunes/s and p50/p95 time to first token and to the whole tune.

python -m benchmarks.serve_bench --clients=32                       # the shipped default model
python -m benchmarks.serve_bench --workdir=runs/small --clients=32 --tunes_per_client=2

The server runs as its own process (``python -m experiments.serve``) on 127.0.0.1 only, so the
clients' parsing does not share its interpreter; every request has its own seed, so no tune
comes from the server's cache. One warm-up tune compiles the sampler first.
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory to serve (default: the shipped default model).")
flags.DEFINE_integer("clients", 32, "Concurrent clients.")
flags.DEFINE_integer("tunes_per_client", 1, "Tunes each client asks for, one after the other.")
flags.DEFINE_integer("slots", 32, "The server's batch rows (--slots of experiments.serve).")
flags.DEFINE_integer("max_length", 1000, "Most tokens per tune.")
flags.DEFINE_bool("constrain", True, "Constrained sampling (the page's default).")
flags.DEFINE_float("temperature", 1.0, "Temperature.")
flags.DEFINE_integer("seed", 1000, "First seed; client c's tune t uses seed + c * tunes_per_client + t.")

HOST = "127.0.0.1"  # loopback only: the benchmark never sends traffic off this machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values, q):
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def one_tune(client, url, params):
    """(seconds to the first token event, seconds to the done event, tokens)."""
    started = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("GET", url + "/api/stream", params=params) as response:
        response.raise_for_status()
        kind = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                if kind == "token":
                    tokens += 1
                    if first is None:
                        first = time.perf_counter() - started
                elif kind == "done":
                    return first, time.perf_counter() - started, tokens
                elif kind == "error":
                    raise RuntimeError(line)
    raise RuntimeError("the stream ended without a tune")


async def run_clients(url, model):
    limits = httpx.Limits(max_connections=FLAGS.clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(1800.0), limits=limits) as client:
        base = dict(model=model, max_length=FLAGS.max_length, constrain=int(FLAGS.constrain),
                    temperature=FLAGS.temperature)
        await one_tune(client, url, {**base, "seed": FLAGS.seed - 1})  # compiles the step

        async def worker(c):
            out = []
            for t in range(FLAGS.tunes_per_client):
                out.append(await one_tune(client, url, {**base, "seed": FLAGS.seed + c * FLAGS.tunes_per_client + t}))
            return out

        started = time.perf_counter()
        results = await asyncio.gather(*(worker(c) for c in range(FLAGS.clients)))
        elapsed = time.perf_counter() - started
        status = (await client.get(url + "/api/status")).json()
    return [r for rs in results for r in rs], elapsed, status


def main(argv):
    del argv
    port = _free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "experiments.serve", f"--host={HOST}", f"--port={port}",
               f"--slots={FLAGS.slots}", f"--data_dir={tempfile.mkdtemp(prefix='serve_bench_')}",
               f"--max_length={FLAGS.max_length}"]
    if FLAGS.workdir:
        command.append(f"--workdir={FLAGS.workdir}")
    server = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped: {server.stderr.read()[-2000:]}")
            try:
                models = httpx.get(url + "/api/models", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise SystemExit("the server did not start in 300 s") from None
                time.sleep(0.5)
        model = models[-1]["name"] if FLAGS.workdir else models[0]["name"]
        results, elapsed, status = asyncio.run(run_clients(url, model))
    finally:
        server.terminate()
        server.wait(timeout=60)
    firsts = [r[0] for r in results]
    wholes = [r[1] for r in results]
    tokens = sum(r[2] for r in results)
    print(f"model {model} ({models[-1 if FLAGS.workdir else 0]['description']}), {FLAGS.clients} clients x "
          f"{FLAGS.tunes_per_client} tunes, slots {FLAGS.slots}, constrain {FLAGS.constrain}, "
          f"max_length {FLAGS.max_length}, CPUs {os.cpu_count()}")
    print(f"{len(results)} tunes in {elapsed:.1f} s: {len(results) / elapsed:.2f} tunes/s, "
          f"{tokens / elapsed:.0f} tokens/s streamed, mean tune {tokens / len(results):.0f} tokens")
    print(f"time to first token: p50 {percentile(firsts, 50):.3f} s, p95 {percentile(firsts, 95):.3f} s, "
          f"max {max(firsts):.3f} s")
    print(f"time to whole tune:  p50 {percentile(wholes, 50):.1f} s, p95 {percentile(wholes, 95):.1f} s, "
          f"max {max(wholes):.1f} s (mean {statistics.mean(wholes):.1f} s)")
    for name, figures in status.items():
        latency = figures.pop("latency", {})
        print(f"server {name}: {figures}")
        if latency:
            print(f"  inside the server (submit to token, no HTTP), last {latency['tunes']} tunes: first token "
                  f"p50 {latency['first_token_p50']:.3f} s, p95 {latency['first_token_p95']:.3f} s; whole tune "
                  f"p50 {latency['whole_tune_p50']:.1f} s, p95 {latency['whole_tune_p95']:.1f} s")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min)")


if __name__ == "__main__":
    app.run(main)
