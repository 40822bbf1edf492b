import jax
import numpy as np
import pytest

from folkrnn_jax.generate import prefix as prefix_lib
from folkrnn_jax.generate import sampler
from folkrnn_jax.music import abc_out, structure, vocab
from folkrnn_jax.music import midi as midi_lib
from folkrnn_jax.music import tools as tools_lib
from folkrnn_jax.training import runs as runs_lib
from tests.conftest import run_module


def _sample_cli(workdir, output, *extra):
    return run_module(
        "experiments.sample", f"--workdir={workdir}", "--num_tunes=6", "--seed=3",
        f"--output={output}", *extra,
    )


def test_sample_cli_is_reproducible_with_headers(trained_run, tmp_path):
    a, b, c = tmp_path / "a.abc", tmp_path / "b.abc", tmp_path / "c.abc"
    for out, seed in ((a, "--seed=3"), (b, "--seed=3"), (c, "--seed=4")):
        result = _sample_cli(trained_run, out, seed, "--prefix=M:6/8 K:Cdor", "--max_length=300")
        assert result.returncode == 0, result.stderr[-2000:]
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()
    blocks = [blk for blk in a.read_text().split("\n\n") if blk.strip()]
    assert len(blocks) == 6
    for i, block in enumerate(blocks, start=1):
        lines = block.splitlines()
        assert lines[0] == f"X:{i}" and lines[1].startswith("T:")
        assert lines[2] == "M:6/8" and lines[3] == "L:1/8" and lines[4] == "K:Cdor"


def test_sampled_tokens_decode_and_stop(trained_run):
    from folkrnn_jax.generate import sampler
    from folkrnn_jax.music import vocab

    model, params, _ = runs_lib.load_run(trained_run)
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 5, "M:4/4 K:Cmaj", 1.0, 200, constrain=False)
    for i in range(5):
        tokens = result.tokens(i)
        assert tokens[:3] == ["<s>", "M:4/4", "K:Cmaj"]
        assert all(t in vocab.TOKEN_TO_ID for t in tokens)
        if not result.truncated[i]:
            assert tokens[-1] == "</s>" and "</s>" not in tokens[:-1]
        else:
            assert len(tokens) == 200
    # Tune i does not depend on how many tunes are sampled with it.
    more = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 7, "M:4/4 K:Cmaj", 1.0, 200, constrain=False)
    np.testing.assert_array_equal(more.ids[:5], result.ids)


def test_unknown_prefix_token_one_line_error(trained_run, tmp_path):
    result = _sample_cli(trained_run, tmp_path / "x.abc", "--prefix=M:6/8 K:Cfoo")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: unknown token 'K:Cfoo' in --prefix, token 2: not in the 137-token v2 vocabulary")


def test_tokens_to_abc_headers():
    abc = abc_out.tokens_to_abc(["<s>", "M:3/4", "K:Cmix", "c", "2", "d", "|", "e", "4", ":|", "</s>"], index=7)
    assert abc.splitlines()[:5] == ["X:7", "T:folkrnn_jax tune 7", "M:3/4", "L:1/8", "K:Cmix"]
    assert abc.splitlines()[5] == "c2 d | e4 :|"


# ---------------------------------------------------------------------------------------------
# Sampling options on a small random model (fast, no training).


@pytest.fixture(scope="module")
def small_model():
    import jax.numpy as jnp

    from folkrnn_jax.model.folkrnn import FolkRNN

    model = FolkRNN(num_layers=2, hidden_size=32, dropout_rate=0.0, init_scale=0.5)
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 4), jnp.int32))["params"]
    return model, params


def _end_bias(strength):
    bias = np.zeros(vocab.VOCAB_SIZE, np.float32)
    bias[vocab.END_ID] = strength
    return bias


def test_prefix_verbatim_and_meter_mode_headers(small_model):
    model, params = small_model
    prefix = "M:6/8 K:Cdor |: G 2 A B c d"
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 4, prefix, max_length=60, constrain=False)
    for i in range(4):
        assert result.tokens(i)[:10] == ["<s>"] + prefix.split()
    headed = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 3, "G A", max_length=40,
                                 meter="3/4", mode="mix", constrain=False)
    for i in range(3):
        assert headed.tokens(i)[:5] == ["<s>", "M:3/4", "K:Cmix", "G", "A"]
        abc = abc_out.tokens_to_abc(headed.tokens(i))
        assert "M:3/4" in abc.splitlines() and "K:Cmix" in abc.splitlines()
    with pytest.raises(ValueError):
        sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 1, "M:4/4", meter="6/8", constrain=False)


def test_top_k_1_is_greedy(small_model):
    import jax.numpy as jnp

    from folkrnn_jax.model.folkrnn import FolkRNN

    model, params = small_model
    length = 30
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(5), 2, "M:4/4 K:Cmaj",
                                 max_length=length, top_k=1, constrain=False)
    tokens = jnp.asarray(vocab.encode(["<s>", "M:4/4", "K:Cmaj"]))[None]
    carry = model.apply({"params": params}, 1, method=FolkRNN.initial_carry)
    logits, carry = model.apply({"params": params}, tokens, carry, method=FolkRNN.decode)
    greedy = list(np.asarray(tokens[0]))
    step = jax.jit(lambda t, c: model.apply({"params": params}, t, c, method=FolkRNN.decode))
    while len(greedy) < length:
        nxt = int(jnp.argmax(logits[0, -1]))
        greedy.append(nxt)
        if nxt == vocab.END_ID:
            break
        logits, carry = step(jnp.asarray([[nxt]]), carry)
    for i in range(2):
        assert list(result.ids[i, : result.lengths[i]]) == greedy


def test_top_p_and_top_k_keep_only_likely_tokens():
    import jax.numpy as jnp

    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(np.asarray(sampler.truncate_logits(logits, 0, jnp.float32(0.7))))
    assert kept.tolist() == [[True, True, False, False]]
    kept = np.isfinite(np.asarray(sampler.truncate_logits(logits, 3, jnp.float32(0.95))))
    assert kept.tolist() == [[True, True, True, False]]
    kept = np.isfinite(np.asarray(sampler.truncate_logits(logits, 0, jnp.float32(0.1))))
    assert kept.tolist() == [[True, False, False, False]]


def test_token_mask_respected(small_model):
    model, params = small_model
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(2), 8, "M:4/4 K:Cmaj",
                                 max_length=120, token_mask=["|", "c", "2"], temperature=2.0, constrain=False)
    unmasked = sampler.sample_tunes(model, params, jax.random.PRNGKey(2), 8, "M:4/4 K:Cmaj",
                                   max_length=120, temperature=2.0, constrain=False)
    assert "|" in sum(unmasked.all_tokens(), [])  # the mask matters for this model
    for tokens in result.all_tokens():
        assert not {"|", "c", "2"} & set(tokens)
    with pytest.raises(ValueError):
        sampler.sample_tunes(model, params, jax.random.PRNGKey(2), 1, token_mask=["</s>"], constrain=False)


def test_early_stop_and_truncation(small_model):
    model, params = small_model
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(3), 5, "M:4/4 K:Cmaj",
                                 max_length=1000, logit_bias=_end_bias(6.0), constrain=False)
    assert not result.truncated.any()
    assert result.steps < 1000 and result.steps >= result.lengths.max() - 1
    for tokens in result.all_tokens():
        assert tokens[-1] == "</s>" and tokens.count("</s>") == 1
    never = sampler.sample_tunes(model, params, jax.random.PRNGKey(3), 3, "M:4/4 K:Cmaj",
                                max_length=50, logit_bias=_end_bias(-1e9), constrain=False)
    assert never.truncated.all() and never.steps == 50 and (never.lengths == 50).all()


def test_prefixes_of_different_lengths_and_wildcards(small_model):
    model, params = small_model
    prefixes = ["M:6/8", "M:4/4 K:Cmin c d e f g", "* K:Cdor G * * A", "M:3/4 K:Cmaj * |"]
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(4), 4, prefixes=prefixes,
                                 max_length=80, constrain=False)
    for i, prefix in enumerate(prefixes):
        want = ["<s>"] + prefix.split()
        got = result.tokens(i)
        assert len(got) > len(want) or got[-1] == "</s>"
        for w, g in zip(want, got):
            assert g == w if w != "*" else (g != "*" and g in vocab.TOKEN_TO_ID)
    # Each tune is the one it would be alone in the batch (same seed, same index).
    alone = sampler.sample_tunes(model, params, jax.random.PRNGKey(4), 2, prefixes=prefixes[:2], max_length=80, constrain=False)
    np.testing.assert_array_equal(alone.ids, result.ids[:2])
    # Continuous batching through 3 rows draws the same tunes, truncated ones included.
    refill = sampler.sample_tunes(model, params, jax.random.PRNGKey(4), 4, prefixes=prefixes, max_length=80,
                                 slots=3, top_k=40, constrain=False)
    whole = sampler.sample_tunes(model, params, jax.random.PRNGKey(4), 4, prefixes=prefixes, max_length=80, top_k=40, constrain=False)
    np.testing.assert_array_equal(refill.ids, whole.ids)
    np.testing.assert_array_equal(refill.truncated, whole.truncated)
    wild = sampler.sample_tunes(model, params, jax.random.PRNGKey(6), 6, "M:4/4 * * c", max_length=40, constrain=False)
    fills = {tuple(t[2:4]) for t in wild.all_tokens()}
    assert len(fills) > 1 and all(t[4] == "c" for t in wild.all_tokens() if len(t) > 4)


def test_abc_text_prefix_is_converted(small_model):
    assert prefix_lib.parse_prefix("M:6/8 K:Dmix |: A>B c2") == ["<s>", "M:6/8", "K:Cmix", "|:", "G", ">", "A", "B", "2"]
    assert prefix_lib.parse_prefix("K:G GAB") == ["<s>", "K:Cmaj", "c", "d", "e"]  # no M: given: none forced
    assert prefix_lib.parse_prefix("M:6/8 K:Cdor G") == ["<s>", "M:6/8", "K:Cdor", "G"]  # v2 tokens stay v2
    with pytest.raises(vocab.UnknownTokenError, match="K:Cfoo"):
        prefix_lib.parse_prefix("M:6/8 K:Cfoo")
    model, params = small_model
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 2, "M:3/4 K:Ador A2 B2 c2", max_length=40, constrain=False)
    for tokens in result.all_tokens():
        assert tokens[:9] == ["<s>", "M:3/4", "K:Cdor", "c", "2", "d", "2", "e", "2"]


def test_stream_matches_batch(small_model):
    model, params = small_model
    kwargs = dict(max_length=70, top_k=20, token_mask=["z"], prefixes=["M:4/4 * c", "K:Cmin"])
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(7), 2, **kwargs)
    steps = list(sampler.sample_stream(model, params, jax.random.PRNGKey(7), 2, **kwargs))
    streamed = np.concatenate([np.full((2, 1), vocab.START_ID), np.stack(steps, axis=1)], axis=1)
    width = min(streamed.shape[1], result.ids.shape[1])
    np.testing.assert_array_equal(streamed[:, :width], result.ids[:, :width])


def test_stream_many_lines_and_tunes(small_model):
    model, params = small_model
    lines = []
    many = sampler.stream_many(model, params, jax.random.PRNGKey(8), 3, on_step=lines.append,
                              prefix="M:4/4", max_length=50, constrain=False)
    assert many.tunes == sampler.sample_tunes(model, params, jax.random.PRNGKey(8), 3, "M:4/4", max_length=50, constrain=False).all_tokens()
    assert lines[0] == "1:M:4/4 2:M:4/4 3:M:4/4"
    assert len(lines) == max(len(t) for t in many.tunes) - 1


def test_sample_cli_midi_svg_and_options(trained_run, tmp_path):

    if not tools_lib.have("abc2midi"):
        pytest.skip("abc2midi is not installed")
    midi_dir = tmp_path / "midi"
    result = _sample_cli(trained_run, midi_dir, "--format=midi", "--meter=6/8", "--mode=dor", "--key=D",
                         "--top_k=20", "--top_p=0.95", "--mask_tokens=|:,:|", "--max_length=200")
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(p.name for p in midi_dir.iterdir())
    assert files == sorted(f"tune_{i:03d}.{ext}" for i in range(1, 7) for ext in ("abc", "mid"))
    for i in range(1, 7):
        stem = midi_dir / f"tune_{i:03d}"
        assert midi_lib.midi_notes(stem.with_suffix(".mid").read_bytes())
        # The ABC beside the MIDI is the tune it was made from.
        assert midi_lib.midi_notes(tools_lib.abc_to_midi(stem.with_suffix(".abc").read_text())) == \
            midi_lib.midi_notes(stem.with_suffix(".mid").read_bytes())
    assert "kept 6 of 6 tunes drawn" in result.stdout and "pass the structure checks" in result.stdout
    abc = tmp_path / "d.abc"
    result = _sample_cli(trained_run, abc, "--meter=6/8", "--mode=dor", "--key=D", "--max_length=200",
                         "--mask_tokens=|:,:|")
    assert result.returncode == 0, result.stderr[-2000:]
    for block in abc.read_text().split("\n\n"):
        lines = block.splitlines()
        assert lines[2] == "M:6/8" and lines[4] == "K:Ddor"
        assert "|:" not in block and ":|" not in block
    if tools_lib.have("abcm2ps"):
        result = _sample_cli(trained_run, tmp_path / "svg", "--format=svg", "--max_length=200")
        assert result.returncode == 0, result.stderr[-2000:]
        names = sorted(p.name for p in (tmp_path / "svg").iterdir())
        assert names == sorted(f"tune_{i:03d}.{ext}" for i in range(1, 7) for ext in ("abc", "svg"))
        for i in range(1, 7):
            stem = tmp_path / "svg" / f"tune_{i:03d}"
            assert stem.with_suffix(".svg").read_text().lstrip().startswith(("<?xml", "<svg"))
            title = stem.with_suffix(".abc").read_text().splitlines()[1]
            assert title.startswith("T:folkrnn_jax step") and f"seed 3 tune {i}, " in title
            assert title[2:] in stem.with_suffix(".svg").read_text()



def test_score_reads_what_sample_writes(trained_run, tmp_path):
    """experiments.score takes the ABC experiments.sample writes, in C or in another key."""
    import json

    from folkrnn_jax.analysis import scoring as scoring_lib
    from folkrnn_jax.data import v2_format
    from tests.conftest import fixture_path

    samples, scores = tmp_path / "samples.abc", tmp_path / "scores.jsonl"
    result = _sample_cli(trained_run, samples, "--meter=6/8", "--mode=dor", "--max_length=200")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_module("experiments.score", f"--workdir={trained_run}", f"--data={samples}",
                        f"--output={scores}")
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in scores.read_text().splitlines()]
    tunes = abc_out.parse_abc_text(samples.read_text())
    assert [r["tokens"] for r in records] == [len(t) + 2 for t in tunes] and len(tunes) == 6
    assert all(np.isfinite(r["log_prob"]) and r["log_prob"] < 0 for r in records)
    # Tunes written in another key (--key, or an ABC --prefix in D) read back through the ABC
    # converter, transposed to C: the same notes. (It needs ABC it can read: a sampled tune
    # with a stray duration cannot be read back from D and is named in the error.)
    tunes = v2_format.read_v2_file(fixture_path("data_v2_excerpt.txt"))
    in_d = tmp_path / "in_d.abc"
    in_d.write_text(abc_out.tunes_to_abc(tunes, key="D"))
    back = v2_format.read_tunes(str(in_d))
    assert [midi_lib.tune_notes(t) for t in back] == [midi_lib.tune_notes(t) for t in tunes]
    model, params, _ = runs_lib.load_run(trained_run)
    assert [r["tokens"] for r in scoring_lib.score_file(model, params, str(in_d))] == [len(t) + 2 for t in back]


def test_sample_cli_valid_only_in_chunks(trained_run, tmp_path):
    import os


    # The briefly trained model rarely writes a whole valid tune, so force a valid tune as the
    # prefix and leave room for two more tokens: some tunes stay valid, some do not.
    excerpt = os.path.join(os.path.dirname(__file__), "fixtures", "data_v2_excerpt.txt")
    blocks = [b.split() for b in open(excerpt).read().split("\n\n") if b.strip()]
    prefix = min((b for b in blocks if structure.is_valid_tune(b)), key=len)
    out = tmp_path / "v.abc"
    args = ("--noconstrain", "--chunk_size=4", f"--max_length={len(prefix) + 3}", f"--prefix={' '.join(prefix)}")
    result = _sample_cli(trained_run, out, "--valid_only", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 of 6 (100.0%) pass the structure checks" in result.stdout
    drawn = int(result.stdout.split(" tunes drawn")[0].split()[-1])
    assert f"drawn {drawn} tunes, kept 6 of 6" in result.stderr  # the progress line of the last round
    assert len([b for b in out.read_text().split("\n\n") if b.strip()]) == 6
    result = _sample_cli(trained_run, tmp_path / "all.abc", "--num_tunes=16", *args)
    assert "kept 16 of 16 tunes drawn" in result.stdout
    passing = int(result.stdout.split(" of 16 (")[0].split()[-1])
    assert passing < 16  # without --valid_only, some tunes fail the checks


def test_sample_many_chunks_match_one_batch(trained_run):
    from folkrnn_jax.generate import sampler

    model, params, _ = runs_lib.load_run(trained_run)
    key = jax.random.PRNGKey(9)
    whole = sampler.sample_tunes(model, params, key, 7, "M:4/4", max_length=120, constrain=False)
    many = sampler.sample_many(model, params, key, 7, chunk_size=3, chunks_per_round=1, prefix="M:4/4",
                              max_length=120, constrain=False)
    assert many.tunes == whole.all_tokens() and many.indices == list(range(7)) and many.sampled == 7
    # Continuous batching: 7 tunes through 2 rows, the same tunes; and rounds of 2 x 2 tunes.
    refill = sampler.sample_tunes(model, params, key, 7, "M:4/4", max_length=120, slots=2, constrain=False)
    np.testing.assert_array_equal(refill.ids, whole.ids)
    assert refill.steps >= sum(whole.lengths - 1) / 2
    rounds = sampler.sample_many(model, params, key, 7, chunk_size=2, chunks_per_round=2, prefix="M:4/4",
                                max_length=120, constrain=False)
    assert rounds.tunes == whole.all_tokens() and rounds.sampled == 7  # rounds of 4 and 3: no tune more


def test_round_size_follows_what_is_still_needed():
    # Without --valid_only exactly what is missing, at most a round.
    assert sampler.round_size(10, 0, 0, False, 2048) == 10
    assert sampler.round_size(952, 2048, 2048, False, 2048) == 952
    # With it, sized to the pass rate seen (one in two at first), a power of two from 8.
    assert sampler.round_size(10, 0, 0, True, 2048) == 32
    assert sampler.round_size(1, 9, 16, True, 2048) == 8
    assert sampler.round_size(10, 0, 100, True, 2048) == 2048  # nothing passed yet: the largest round
    assert sampler.round_size(5, 95, 100, True, 2048) == 8


def test_valid_only_draws_in_rounds_sized_to_the_pass_rate_on_the_shipped_model(tmp_path):
    """--num_tunes=10 --valid_only on the shipped model draws tens of tunes, not rounds of
    2,048, and the summary says how many were drawn and kept."""
    out = tmp_path / "valid.abc"
    result = run_module("experiments.sample", "--num_tunes=10", "--valid_only", f"--output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    drawn = int(result.stdout.split("kept 10 of ")[1].split(" tunes drawn")[0])
    assert 10 <= drawn < 200, result.stdout
    assert f"drawn {drawn} tunes, kept 10 of 10" in result.stderr
    assert out.read_text().count("X:") == 10


def test_sample_cli_stream_and_missing_abcm2ps(trained_run, tmp_path, monkeypatch):
    result = _sample_cli(trained_run, tmp_path / "s.abc", "--stream", "--num_tunes=2", "--meter=6/8",
                         "--max_length=30")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line[:2] in ("1:", "2:")]
    assert lines[0] == "1:M:6/8 2:M:6/8" and 2 <= len(lines) <= 29
    assert len([b for b in (tmp_path / "s.abc").read_text().split("\n\n") if b.strip()]) == 2
    monkeypatch.setenv("PATH", str(tmp_path))  # no abcm2ps on PATH
    result = _sample_cli(trained_run, tmp_path / "svg", "--format=svg", "--max_length=30")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "abcm2ps is not installed" in errors[0]


def test_bfloat16_sampling_is_close_to_float32(trained_run, tmp_path):
    import jax.numpy as jnp

    from folkrnn_jax.generate import sampler
    from folkrnn_jax.model.folkrnn import FolkRNN
    from folkrnn_jax.music import vocab

    model, params, _ = runs_lib.load_run(trained_run)
    bf16 = model.clone(matmul_dtype="bfloat16")
    cast = sampler.sampling_params(bf16, params)
    assert cast["lstm_1_w_hid"].dtype == jnp.bfloat16 and cast["lstm_1_bias"].dtype == jnp.float32
    assert sampler.sampling_params(model, params) is params
    tune = jnp.asarray([vocab.encode("<s> M:4/4 K:Cmaj c d e f | g a b c' |".split())])
    carry = model.apply({"params": params}, 1, method=FolkRNN.initial_carry)
    exact, _ = model.apply({"params": params}, tune, carry, method=FolkRNN.decode)
    rounded, _ = bf16.apply({"params": cast}, tune, carry, method=FolkRNN.decode)
    assert rounded.dtype == jnp.float32
    diff = jnp.abs(jax.nn.log_softmax(exact) - jax.nn.log_softmax(rounded)).max()
    assert 0 < float(diff) < 0.05  # bfloat16 weights, float32 state and accumulation
    result = _sample_cli(trained_run, tmp_path / "b.abc", "--matmul_dtype=bfloat16")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "b.abc").read_text().count("X:") == 6
