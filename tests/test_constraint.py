"""Structure-constrained sampling: the automaton's rules, random walks through it that the
checker must accept, and the sampler with ``constrain=True``."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from folkrnn_jax.generate import constraint, rhythms, sampler
from folkrnn_jax.music import abc_out, rhythm, structure, vocab
from folkrnn_jax.music import tools as tools_lib
from folkrnn_jax.training import runs as runs_lib
from tests.conftest import ROOT, run_module

_ALLOWED, _ADVANCE = jax.jit(constraint.allowed), jax.jit(constraint.advance)


def _states(tokens: list[str]):
    """The automaton's state before each of ``tokens`` and after the last (one jitted step a token)."""
    state = constraint.initial_state(1)
    yield state
    for token in tokens:
        state = _ADVANCE(state, jnp.asarray([vocab.TOKENS.index(token)], jnp.int32))
        yield state


def _allowed_after(tokens: str) -> set[str]:
    *_, state = _states(tokens.split())
    ok = np.asarray(_ALLOWED(state))[0]
    return {vocab.TOKENS[i] for i in np.flatnonzero(ok)}


def _refused_at(tokens: str) -> int | None:
    """Index of the first token of ``tokens`` the automaton refuses, or None."""
    tune = tokens.split()
    for i, state in enumerate(_states(tune)):
        if i == len(tune):
            break
        if not bool(_ALLOWED(state)[0, vocab.TOKENS.index(tune[i])]):
            return i
    return None


def _abc2midi_problems(tune: list[str]) -> list[str]:
    """abc2midi's bar-length warnings and rhythm errors for one tune as ``tunes_to_abc`` writes
    it (one tune per run: abc2midi drops the tunes after one it fails on)."""
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.abc")
        with open(path, "w", encoding="utf-8") as f:
            f.write(abc_out.tunes_to_abc([[t for t in tune if t not in (vocab.START, vocab.END)]]))
        out = subprocess.run(["abc2midi", path, "-o", os.path.join(folder, "t.mid")], capture_output=True,
                             text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines()
            if "time units" in line or "power of 2" in line or "denominator" in line]


PART = "c 8 | c 8 |"  # two full 4/4 bars


def test_bar_lengths():
    # The first bar is a pickup: a bar line may close it short.
    assert "|" in _allowed_after("M:4/4 K:Cmaj c d")
    # A later bar must be full before a plain bar line.
    assert "|" not in _allowed_after("M:4/4 K:Cmaj c d | c 6")
    after_note = _allowed_after("M:4/4 K:Cmaj c d | c 6 d")
    assert "|" not in after_note and "3" not in after_note and "2" in after_note  # d 3 would overfill
    assert "|" in _allowed_after("M:4/4 K:Cmaj c d | c 6 d e")
    # A note that overfills the bar may start only if a duration can shorten it, and then
    # only such a duration (one 4/4 tunes use) may follow.
    assert "e" in _allowed_after("M:4/4 K:Cmaj c d | c 6 d 3/2")  # 7.5 eighths: e /2 fits
    assert _allowed_after("M:4/4 K:Cmaj c d | c 6 d 3/2 e") == {"/2", "/4"}
    # Tuplets and broken rhythms owe notes: no bar line before they are paid.
    assert "|" not in _allowed_after("M:4/4 K:Cmaj c d | c 4 (3 d e")
    assert "|" not in _allowed_after("M:4/4 K:Cmaj c d | c 6 d >")
    assert "|" in _allowed_after("M:4/4 K:Cmaj c d | c 6 d > e")


# (written, refused at this token or None): a pickup and the bar that closes its repeat make
# one bar, as abc2midi counts them (see the constraint module's docstring).
PICKUP_CASES = [
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 :| |: d 2 | c 8 | c 8 | c 8 | c 6 :|", None),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 8 :|", ":|"),  # the closing bar must be 6 long
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 4 :|", ":|"),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 |", "|"),  # a plain bar line checks it: full
    ("M:4/4 K:Cmaj A 2 |: c 8 | c 8 | c 8 | c 8 :|", None),  # a pickup before '|:': full part
    ("M:4/4 K:Cmaj A 2 |: c 8 | c 8 | c 8 | c 6 :|", ":|"),
    # A short closing bar carries on into the next bar, which must complete it.
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 :| d 2 | c 8 | c 8 | c 8 | c 8 |", None),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 :| d |", "|"),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 :| |: d |", "|"),
    ("M:4/4 K:Cmaj c 8 | c 8 | c 8 | c 8 :| |: d 2 |", "|"),  # nothing carried: a full bar
    # Repeat from the start: the first bar is the part's first bar.
    ("M:4/4 K:Cmaj A 2 | c 8 | c 8 | c 8 | c 6 :|", None),
    ("M:4/4 K:Cmaj A 2 | c 8 | c 8 | c 8 | c 8 :|", ":|"),
    # 'A :| B :|': B repeats from the first ':|', which its closing bar completes.
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 :| d 2 | c 8 | c 8 | c 8 | c 6 :|", None),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 | c 8 | c 6 :| d 2 | c 8 | c 8 | c 8 | c 8 :|", ":|"),
    # Endings: the first closes like the part, the second starts a fresh bar.
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 |1 c 8 | c 6 :| |2 c 8 | c 8 |", None),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 |1 c 8 | c 8 :|", ":|"),
    ("M:4/4 K:Cmaj |: A 2 | c 8 | c 8 |1 c 8 | c 6 :| |2 c 8 | c 6 |", "|"),
]


def test_pickup_and_closing_bar_make_one_bar():
    for tokens, refused in PICKUP_CASES:
        at = _refused_at(tokens)
        expected = None if refused is None else len(tokens.split()) - 1 - tokens.split()[::-1].index(refused)
        assert at == expected, (tokens, at)


@pytest.mark.skipif(not tools_lib.have("abc2midi"), reason="abc2midi (Debian package abcmidi) is not on PATH")
def test_pickup_rule_is_what_abc2midi_checks():
    """abc2midi warns about a bar length in exactly the tunes the automaton refuses at a bar
    line (those refused elsewhere, for a part length or a repeat, are left out)."""
    for tokens, refused in PICKUP_CASES:
        warnings = _abc2midi_problems(tokens.split())
        assert bool(warnings) == (refused is not None), (tokens, warnings)


def test_parts():
    # A section holds 4, 8, 12 or 16 bars: no ':|' after 3 bars, and the tune ends after one.
    assert ":|" not in _allowed_after("M:4/4 K:Cmaj |: " + PART + " c 8")
    assert ":|" in _allowed_after("M:4/4 K:Cmaj |: " + PART + " c 8 | c 8")
    two = "M:4/4 K:Cmaj " + PART + " " + PART[:-1] + " |: " + PART + " "
    assert "</s>" not in _allowed_after(two + "c 8 |")
    assert "</s>" in _allowed_after(two + PART[:-1] + " :|")
    assert "</s>" not in _allowed_after("M:4/4 K:Cmaj |: " + PART + " " + PART[:-1] + " :|")  # MIN_SECTIONS
    # A part that opens with a pickup closes by its 8th bar, which ends where ':|' needs it.
    eighth = "M:4/4 K:Cmaj |: A 2 | " + " ".join([PART] * 3) + " c 8 | c 4 d 2"
    assert _allowed_after(eighth) & {"2", "|", ":|", "c"} == {":|"}
    assert "|:" not in _allowed_after("M:4/4 K:Cmaj " + PART + " c 8")  # a 3-bar section
    # 16 bars under an open repeat: only ':|' may close the 16th.
    sixteen = "M:4/4 K:Cmaj |: " + " ".join([PART] * 7) + " c 8 | c 6"
    assert _allowed_after(sixteen + " d 2") & {"|", ":|", "|1"} == {":|"}
    # At most MAX_SECTIONS parts, then the tune ends.
    four = "M:4/4 K:Cmaj " + " ".join(["|: " + PART + " " + PART[:-1] + " :|"] * constraint.MAX_SECTIONS)
    assert _allowed_after(four) == {"</s>"}


def test_repeats_and_endings():
    opened = "M:4/4 K:Cmaj |: " + PART + " c 8 | c 8"
    assert ":|" in _allowed_after(opened)
    assert "|:" not in _allowed_after(opened + " |")
    assert "</s>" not in _allowed_after(opened + " |")
    assert "</s>" in _allowed_after(opened + " :| |: " + PART + " c 8 | c 8 :|")
    assert "|2" not in _allowed_after(opened + " |")
    first = "M:4/4 K:Cmaj |: " + PART + " c 8 |1 c 8"
    assert "|2" not in _allowed_after(first + " |")  # |2 needs a :| first
    assert "|1" not in _allowed_after(first + " |")
    assert "</s>" not in _allowed_after(first + " :|")
    assert _allowed_after(first + " :|") == {"|2"}  # the second ending follows at once
    # No empty bars: two bar lines in a row only as ':| |:' or ':| |2'.
    assert "|" not in _allowed_after("M:4/4 K:Cmaj c 8 |") and "|:" not in _allowed_after("M:4/4 K:Cmaj c 8 |")
    assert "|:" in _allowed_after(opened + " :|") and "|" not in _allowed_after(opened + " :|")
    assert "</s>" in _allowed_after(first + " :| |2 c 8 |: " + PART + " c 8 | c 8 :|")
    # '|1' only inside '|: ... :|'; ':|' closes the '|:' or, before any repeat sign, the start.
    assert "|1" not in _allowed_after("M:4/4 K:Cmaj " + PART + " c 8")
    assert ":|" in _allowed_after(opened + " :| " + PART + " " + PART[:-1])  # 'A :| B :|'
    assert ":|" not in _allowed_after(first + " :| |2 c 8 | " + PART + " " + PART[:-1])


def test_second_ending_completes_its_part():
    # A 16-bar part with endings: its second ending holds the bar the first ending held (it
    # used to find no room after 8 bars and end the tune on an empty '|2').
    long_first = "M:4/4 K:Cmaj |: " + " ".join([PART] * 7) + " c 8 |1 c 8 :| |2"
    assert "c" in _allowed_after(long_first)
    assert _allowed_after(long_first + " c 8") & {"|", ":|", "|:", "</s>"} == {"|:"}  # the B part next
    # The second ending of an 8-bar part is one bar too: then only '|:' or the end.
    short_first = "M:4/4 K:Cmaj |: " + " ".join([PART] * 3) + " c 8 |1 c 8 :| |2 c 8 |"
    assert "c" not in _allowed_after(short_first)


def test_later_parts_no_longer_than_the_first():
    a_part = "M:4/4 K:Cmaj |: " + " ".join([PART] * 3) + " c 8 | c 8 :|"
    b_eight = a_part + " |: " + " ".join([PART] * 3) + " c 8 | c 8"
    assert _allowed_after(b_eight) & {"|", ":|", "|1"} == {":|"}  # B closes at 8 bars, not 12 or 16
    a_sixteen = "M:4/4 K:Cmaj |: " + " ".join([PART] * 7) + " c 8 | c 8 :|"
    assert "|" in _allowed_after(a_sixteen + " |: " + " ".join([PART] * 3) + " c 8 | c 8")


def test_only_the_datas_rhythms():
    """The committed table is what the training data gives, and the automaton offers no other
    duration, broken rhythm or tuplet."""
    from folkrnn_jax.data import v2_format

    missing = [p for p in rhythms.SOURCES if not os.path.exists(os.path.join(ROOT, p))]
    if missing:
        pytest.skip(f"{missing[0]} is not present (the v2 tunes live in ../shared/data)")
    tunes = [t for path in rhythms.SOURCES for t in v2_format.read_tunes(os.path.join(ROOT, path))]
    assert rhythms.attested(tunes) == rhythms.load_table()
    table = rhythms.load_table()
    for meter in vocab.METER_TOKENS:
        after_note = _allowed_after(f"{meter} K:Cmaj c")
        offered = {t for t in after_note if rhythm.parse_duration(t) is not None or rhythm.parse_broken(t)}
        assert offered == set(table[meter]["rhythms"]), meter
        assert {t for t in after_note if t.startswith("(")} == set(table[meter]["tuplets"]), meter
    assert "(2" not in str(table) and "/3" not in str(table)  # the rhythms of the tunes


def test_tuplets_of_equal_notes():
    # 2/4 tunes write triplets of eighths and of sixteenths ('(3 c d e', '(3 c /2 d /2 e /2').
    assert {"/2"} <= _allowed_after("M:2/4 K:Cmaj c 2 | (3 c") and "c" in _allowed_after("M:2/4 K:Cmaj c 2 | (3 c")
    assert _allowed_after("M:2/4 K:Cmaj c 2 | (3 c /2 d") == {"/2"}  # the notes after repeat it
    assert "/2" not in _allowed_after("M:2/4 K:Cmaj c 2 | (3 c d")
    assert "</s>" not in _allowed_after("M:2/4 K:Cmaj c 2 | (3 c /2 d /2 e")  # nor without
    # A tuplet starts at a multiple of its own length: after one eighth only sixteenths fit.
    assert _allowed_after("M:2/4 K:Cmaj c 2 | c (3 d") == {"/2"}
    assert "(3" not in _allowed_after("M:4/4 K:Cmaj c 2 | c")  # 4/4 tunes: eighths, on the beat
    assert "/2" not in _allowed_after("M:4/4 K:Cmaj c 2 | (3 c")


def test_ticks_divide_every_duration():
    table = constraint.token_table()
    for kind, num, den in zip(table.kind, table.num, table.den):
        if kind in (constraint.DURATION, constraint.BROKEN):
            assert constraint.TICKS * num % den == 0
    for p, q in zip(table.tup_p, table.tup_q_simple):
        assert constraint.TICKS * q % (p * 8) == 0


def _broken_pairs_equal(tokens: list[str]) -> bool:
    """Whether each broken rhythm joins two notes with the same duration token ('c2>d2')."""
    for i, token in enumerate(tokens):
        broken = rhythm.parse_broken(token)
        if broken is None:
            continue
        d = broken[0]
        first = rhythm.parse_duration(tokens[i - 1]) if d == 1 and rhythm.parse_duration(tokens[i - 1]) else d
        j = next(j for j in range(i + 1, len(tokens)) if rhythm.is_note(tokens[j]))
        after = tokens[j + 1]
        second = rhythm.parse_duration(after) or (rhythm.parse_broken(after) or (1, ""))[0]
        if first != second:
            return False
    return True


def test_broken_rhythms_join_equal_notes():
    assert _allowed_after("M:4/4 K:Cmaj c 2> d") == {"2"}
    after = _allowed_after("M:4/4 K:Cmaj c > d")
    assert "2" not in after and "/2" not in after and "e" in after
    assert ">" not in after and "(3" in after  # no chained broken rhythms
    assert "(3" not in _allowed_after("M:4/4 K:Cmaj c >")  # the second note is a plain note
    assert ">" not in _allowed_after("M:4/4 K:Cmaj (3 c d e")  # not on a tuplet note
    assert _allowed_after("M:4/4 K:Cmaj c 3/2 > d") >= {"3/2"}
    assert ">" not in _allowed_after("M:4/4 K:Cmaj c 3/2 > d 3/2")  # not chained after its duration
    assert "/2" not in _allowed_after("M:4/4 K:Cmaj c 3/2 > d")


def test_random_walks_pass_the_checker():
    """Tunes written by choosing uniformly at random among the allowed tokens (with skewed
    per-tune preferences, so that rare tokens and long bars come up) all pass the checker
    and abc2midi (no bar-length warning, no rhythm it rejects) and use only the data's
    rhythms, and no state is ever left without an allowed token."""
    batch = 128
    rng = np.random.RandomState(0)
    preference = rng.rand(batch, vocab.VOCAB_SIZE) ** 3
    allowed, advance = _ALLOWED, _ADVANCE
    state = constraint.initial_state(batch)
    tunes = [[vocab.START] for _ in range(batch)]
    done = np.zeros(batch, bool)
    for step in range(700):
        ok = np.asarray(allowed(state))
        assert ok.any(axis=1).all()
        weights = ok * rng.rand(batch, vocab.VOCAB_SIZE) * preference
        weights[:, vocab.END_ID] *= 100 * (step > 30)  # end where the tune may
        choice = np.argmax(weights, axis=1)
        for i in np.flatnonzero(~done):
            tunes[i].append(vocab.TOKENS[choice[i]])
        done |= choice == vocab.END_ID
        state = advance(state, jnp.asarray(choice, jnp.int32))
    finished = [t for t in tunes if t[-1] == vocab.END]
    assert len(finished) > batch // 4
    problems = {" ".join(t): structure.tune_problems(t) for t in finished}
    assert not {k: v for k, v in problems.items() if v}
    assert all(_broken_pairs_equal(t) for t in finished)
    used = {t for tune in finished for t in tune}
    assert {"|1", "|2", ":|", "|:", "(3", ">", "<", "/2", "3/2"} <= used  # the walk went everywhere
    table = rhythms.load_table()
    for meter, counts in rhythms.count_rhythms(finished).items():
        assert set(counts["rhythms"]) <= set(table[meter]["rhythms"]), meter
        for key in counts["tuplets"]:
            token, _, duration = key.partition(" ")
            assert duration in table[meter]["tuplets"][token], (meter, key)
    if tools_lib.have("abc2midi"):
        problems = {" ".join(t): _abc2midi_problems(t) for t in finished[:40]}
        assert not {k: v for k, v in problems.items() if v}


def test_constrained_sampling_writes_valid_tunes(trained_run):
    from folkrnn_jax.music import structure

    model, params, _ = runs_lib.load_run(trained_run)
    key = jax.random.PRNGKey(4)
    free = sampler.sample_tunes(model, params, key, 48, max_length=400, constrain=False)
    constrained = sampler.sample_tunes(model, params, key, 48, max_length=400, constrain=True)
    ended = [constrained.tokens(i) for i in range(48) if not constrained.truncated[i]]
    assert len(ended) >= 24  # a 60-step model: some tunes wander until max_length
    assert all(structure.is_valid_tune(t) for t in ended)
    if tools_lib.have("abc2midi"):  # and a player (abc2midi) finds no bar of the wrong length
        problems = {" ".join(t): _abc2midi_problems(t) for t in ended}
        assert not {k: v for k, v in problems.items() if v}
    assert sum(structure.is_valid_tune(t) for t in free.all_tokens()) < len(ended)
    # Continuous batching, a forced prefix and streaming draw the same constrained tunes.
    refill = sampler.sample_tunes(model, params, key, 48, max_length=400, constrain=True, slots=16)
    np.testing.assert_array_equal(refill.ids, constrained.ids)
    prefixed = sampler.sample_tunes(model, params, key, 8, "M:6/8 K:Cdor |: c", max_length=400, constrain=True)
    for i in range(8):
        tune = prefixed.tokens(i)
        assert tune[:5] == ["<s>", "M:6/8", "K:Cdor", "|:", "c"]
        if not prefixed.truncated[i]:
            assert structure.is_valid_tune(tune), tune
    steps = list(sampler.sample_stream(model, params, key, 4, max_length=120, constrain=True))
    streamed = np.stack(steps, axis=1)
    batch = sampler.sample_tunes(model, params, key, 4, max_length=120, constrain=True)
    np.testing.assert_array_equal(streamed, batch.ids[:, 1 : 1 + streamed.shape[1]])


@pytest.mark.slow  # 35 s on 2 cores; the sampling tests above keep the constraint honest by default
def test_constrained_greedy_is_the_best_allowed_token(trained_run):
    from folkrnn_jax.generate import constraint

    model, params, _ = runs_lib.load_run(trained_run)
    result = sampler.sample_tunes(model, params, jax.random.PRNGKey(0), 2, max_length=60, top_k=1,
                                 constrain=True)
    ids = jnp.asarray(result.ids)
    logits = model.apply({"params": params}, ids[:, :-1])  # [batch, time, vocab]
    states = constraint.initial_state(2)
    for t in range(int(result.lengths.min()) - 1):
        ok = constraint.allowed(states)
        best = jnp.argmax(jnp.where(ok, logits[:, t], -jnp.inf), axis=-1)
        np.testing.assert_array_equal(np.asarray(best), result.ids[:, t + 1])
        states = constraint.advance(states, ids[:, t + 1])


def test_sample_cli_constrain(trained_run, tmp_path):
    out = tmp_path / "c.abc"
    result = run_module("experiments.sample", f"--workdir={trained_run}", "--num_tunes=12", "--seed=1",
                        "--max_length=400", "--constrain", f"--output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(l for l in result.stdout.splitlines() if "pass the structure checks" in l)
    kept, passing, truncated = (int(part.split(" of")[0].split()[-1]) for part in line.split("; "))
    assert kept == 12 and line.startswith("kept 12 of 12 tunes drawn")
    assert passing + truncated == 12  # every tune that ended is valid
    assert out.read_text().count("X:") == 12


def test_constrain_every_combination_of_meter_mode_prefix(trained_run):
    """``--constrain`` with any of --meter, --mode, --prefix writes whole tunes, not '| (3'."""
    import itertools

    from folkrnn_jax.music import structure

    model, params, _ = runs_lib.load_run(trained_run)
    for meter, mode, prefix in itertools.product((None, "6/8"), (None, "dor"), ("", "|: c")):
        result = sampler.sample_tunes(model, params, jax.random.PRNGKey(2), 6, prefix, max_length=400,
                                      constrain=True, meter=meter, mode=mode)
        ended = [result.tokens(i) for i in range(6) if not result.truncated[i]]
        assert ended, (meter, mode, prefix)
        for tune in ended:
            assert tune[1].startswith("M:"), (meter, mode, prefix, tune)
            assert structure.is_valid_tune(tune), tune
            # Today's 60-step fixture model writes short tunes; the bug wrote none ('| (3').
            assert len(tune) >= 10, (meter, mode, prefix, tune)
            if meter:
                assert tune[1] == "M:6/8"
            if mode:
                assert tune[2] == "K:Cdor"
