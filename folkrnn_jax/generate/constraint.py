"""Structure-constrained sampling: a token automaton that only lets valid tunes be written.

``allowed(state)`` gives, for every tune of a batch, the tokens that keep the tune valid under
``folkrnn_jax.structure`` (``tune_problems`` finds nothing in a tune that ends under the
constraint), and ``advance(state, token)`` moves the automaton on by the emitted token. Both
are jit-friendly array code over small integer states, so the sampler applies the constraint
inside its compiled loop: the model's distribution is renormalised over the allowed tokens at
every step (temperature, top-k and top-p then act on that).

The automaton is a stricter version of the checker's rules, so that every step can be decided
from the past alone:

* a header first: ``M:`` then ``K:`` (forced prefix tokens are taken as they come);
* every bar lasts exactly the meter's bar length, except the first bar (a pickup), a bar
  opened or closed by a repeat or ending sign (``|:``, ``:|``, ``|1``, ``|2``) and the last
  bar; no note may overfill a bar (a note may only start if a duration token can still make
  it fit, and then only such a duration token may follow);
* repeats: no ``|:`` while one is open, ``|1`` needs a later ``:|`` and then straight away
  ``|2``, the tune ends only with every repeat and ending closed;
* durations follow a note, broken rhythms a note or its duration, a tuplet is followed by its
  notes before a bar line or the end, and a broken rhythm by a note; a broken rhythm joins
  two notes of the same written length outside tuplets, not chained (``c2>d2``, as ABC
  players need it);
* no empty bars (two bar lines in a row only as ``:| |:`` and ``:| |2``); chords (``[``,
  ``]``) are not written; ``M:`` and ``K:`` changes only at the start of a bar
  after the first.

Durations are counted exactly in integer ticks (``TICKS`` per eighth note, divisible by every
duration, tuplet and broken-rhythm factor of the v2 vocabulary); a token whose length would
not be a whole number of ticks is not allowed. When no token is allowed (the model painted
itself into a corner no allowed token can get out of, which the rules make very rare) the
tune is ended there, and the checker reports it.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from folkrnn_jax.music import rhythm, vocab

Array = jax.Array

TICKS = 2**6 * 3**3 * 5 * 7  # per eighth note: 60,480
(OTHER, NOTE, DURATION, BROKEN, TUPLET, BAR, METER, MODE, END) = range(9)
BAR_KINDS = ("|", "|:", ":|", "|1", "|2")
HEADER_METER, HEADER_MODE, BODY = 0, 1, 2


class TokenTable(NamedTuple):
    """Per-token constants [vocab] that the automaton reads."""

    kind: np.ndarray
    num: np.ndarray  # duration / broken multiplier numerator (1 otherwise)
    den: np.ndarray
    broken: np.ndarray  # 1 for '>', 2 for '<'
    bar: np.ndarray  # index in BAR_KINDS
    tup_p: np.ndarray
    tup_q_simple: np.ndarray
    tup_q_compound: np.ndarray
    bar_len: np.ndarray  # ticks of an M: token's bar
    compound: np.ndarray  # an M: token of a compound meter (tuplet defaults)


@functools.lru_cache(maxsize=1)
def token_table() -> TokenTable:
    size = vocab.VOCAB_SIZE
    kind = np.full((size,), OTHER, np.int32)
    num, den, broken, bar = (np.ones((size,), np.int32), np.ones((size,), np.int32),
                             np.zeros((size,), np.int32), np.zeros((size,), np.int32))
    tup_p, tup_qs, tup_qc, bar_len = (np.ones((size,), np.int32), np.ones((size,), np.int32),
                                      np.ones((size,), np.int32), np.zeros((size,), np.int32))
    compound = np.zeros((size,), bool)
    for i, token in enumerate(vocab.TOKENS):
        if token == vocab.END:
            kind[i] = END
        elif token in BAR_KINDS:
            kind[i], bar[i] = BAR, BAR_KINDS.index(token)
        elif token.startswith("M:"):
            kind[i] = METER
            bar_len[i] = int(rhythm.meter_bar_length(token) * TICKS)
            compound[i] = token in rhythm.COMPOUND_METERS
        elif token.startswith("K:"):
            kind[i] = MODE
        elif rhythm.is_note(token):
            kind[i] = NOTE
        elif rhythm.parse_duration(token) is not None:
            d = Fraction(rhythm.parse_duration(token))
            kind[i], num[i], den[i] = DURATION, d.numerator, d.denominator
        elif rhythm.parse_broken(token) is not None:
            d, direction = rhythm.parse_broken(token)
            kind[i], num[i], den[i] = BROKEN, d.numerator, d.denominator
            broken[i] = 1 if direction == ">" else 2
        elif rhythm.tuplet_ratio(token, None) is not None:
            kind[i] = TUPLET
            tup_p[i], tup_qs[i] = rhythm.tuplet_ratio(token, None)
            tup_qc[i] = rhythm.tuplet_ratio(token, "M:6/8")[1]
    return TokenTable(kind, num, den, broken, bar, tup_p, tup_qs, tup_qc, bar_len, compound)


class State(NamedTuple):
    """The automaton's state, one entry per tune ([batch] arrays)."""

    phase: Array  # HEADER_METER, HEADER_MODE or BODY
    bar_len: Array  # ticks per bar of the current meter (0: none yet)
    compound: Array  # the current meter is 6/8, 9/8 or 12/8 (tuplet defaults)
    pos: Array  # ticks in the current bar, the last note counted at its current length
    last: Array  # ticks of the last note (what a duration token multiplies)
    can_dur: Array  # a duration token may follow (right after a note)
    prev_dur: Array  # the previous token was a duration (a plain '>'/'<' may follow)
    pending: Array  # broken rhythm waiting for its second note: 0 none, 1 '>', 2 '<'
    tup_left: Array  # notes left in the current tuplet
    tup_num: Array  # tuplet scale q/p
    tup_den: Array
    need_note: Array  # a tuplet was just opened: a note must come next
    bar_used: Array  # the current bar holds a note
    opened_by_repeat: Array  # the current bar starts after |:, :|, |1 or |2
    bars: Array  # bars closed so far
    repeat_open: Array
    first_ending: Array  # |1 seen, waiting for :| and |2
    closed_after_first: Array
    need_second: Array  # ':|' just closed a first ending: '|2' must follow
    after_bar: Array  # the previous token's index in BAR_KINDS, -1 when it was no bar line
    mult_num: Array  # the duration multiplier the last note carries (1/1 without one)
    mult_den: Array
    pair_num: Array  # the multiplier the second note of a broken rhythm must carry
    pair_den: Array
    pair_due: Array  # the last note is that second note: its duration must match
    last_in_tuplet: Array  # the last note belongs to a tuplet


def initial_state(batch: int) -> State:
    """The state after ``<s>``."""
    zero = jnp.zeros((batch,), jnp.int32)
    one = zero + 1
    false = jnp.zeros((batch,), bool)
    return State(
        phase=zero + HEADER_METER, bar_len=zero, compound=false, pos=zero, last=zero,
        can_dur=false, prev_dur=false, pending=zero, tup_left=zero, tup_num=one, tup_den=one,
        need_note=false, bar_used=false, opened_by_repeat=false, bars=zero, repeat_open=false,
        first_ending=false, closed_after_first=false, need_second=false, after_bar=zero - 1,
        mult_num=one, mult_den=one, pair_num=one, pair_den=one, pair_due=false, last_in_tuplet=false,
    )


def _scaled(x: Array, num: Array, den: Array) -> tuple[Array, Array]:
    """x * num / den and whether it is a whole number of ticks."""
    product = x * num
    return product // den, product % den == 0


def _transition(state: State, table: dict) -> tuple[State, Array]:
    """The state after each candidate token and whether the token is allowed. ``state``
    fields and ``table`` entries broadcast against each other ([batch, 1] x [vocab], or
    [batch] x [batch] for the emitted token)."""
    kind = table["kind"]
    in_body = state.phase == BODY
    bar_empty = (state.pos == 0) & ~state.bar_used
    quiet = ~state.need_note & (state.pending == 0) & (state.tup_left == 0)
    over = state.pos > state.bar_len

    # Notes: base length x tuplet scale x the factor of a pending broken rhythm.
    in_tuplet = state.tup_left > 0
    value, whole1 = _scaled(jnp.full_like(state.pos, TICKS), jnp.where(in_tuplet, state.tup_num, 1),
                            jnp.where(in_tuplet, state.tup_den, 1))
    value, whole2 = _scaled(value, jnp.where(state.pending == 2, 3, 1), jnp.where(state.pending == 0, 1, 2))
    note_pos = state.pos + value
    note_ok = in_body & ~over & whole1 & whole2 & (state.bar_len > 0)

    # Durations multiply the last note.
    new_last, whole = _scaled(state.last, table["num"], table["den"])
    dur_pos = state.pos + new_last - state.last
    dur_ok = in_body & state.can_dur & whole

    # Broken rhythms: the note before (times d, as a duration token would make it) becomes
    # x3/2 ('>') or x1/2 ('<').
    long_, whole_l = _scaled(new_last, jnp.where(table["broken"] == 1, 3, 1), 2)
    plain = (table["num"] == 1) & (table["den"] == 1)
    # Not on a tuplet note, not chained onto the second note of a broken rhythm (abc2midi cannot
    # play either; of the 41,508 broken rhythms in the first 5,000 v2 tunes and the default
    # corpus, 21 are on a tuplet note and 10 chained).
    broken_ok = (in_body & whole & whole_l & (state.last > 0) & (state.pending == 0)
                 & (state.can_dur | (state.prev_dur & plain)) & ~state.last_in_tuplet & ~state.pair_due
                 & (state.tup_left == 0))
    broken_pos = state.pos + long_ - state.last

    # Tuplets.
    tup_q = jnp.where(state.compound, table["tup_q_compound"], table["tup_q_simple"])
    tuplet_ok = in_body & (state.tup_left == 0) & ~state.need_note & (state.pending == 0)

    # Bar lines.
    bar_kind = jnp.where(kind == BAR, table["bar"], -1)
    boundary = bar_kind > 0
    full = state.pos == state.bar_len
    length_ok = ~state.bar_used | full | (state.bars == 0) | state.opened_by_repeat | boundary
    repeat_ok = jnp.where(
        bar_kind == 1, ~state.repeat_open,
        jnp.where(bar_kind == 3, ~state.first_ending,
                  jnp.where(bar_kind == 4, state.first_ending & state.closed_after_first, True)))
    # No empty bars: two bar lines in a row only as ':| |:' or ':| |2'.
    adjacent_ok = (state.after_bar < 0) | ((state.after_bar == 2) & ((bar_kind == 1) | (bar_kind == 4)))
    bar_ok = in_body & ~over & quiet & length_ok & repeat_ok & adjacent_ok

    # Header tokens, and M:/K: changes at the start of a bar.
    change_ok = in_body & bar_empty & quiet & (state.bars > 0)
    meter_ok = (state.phase == HEADER_METER) | change_ok
    mode_ok = (state.phase == HEADER_MODE) | change_ok
    end_ok = (in_body & ~over & quiet & (state.bar_used | (state.bars > 0)) & ~state.repeat_open
              & ~state.first_ending)

    allowed = jnp.select(
        [kind == NOTE, kind == DURATION, kind == BROKEN, kind == TUPLET, kind == BAR, kind == METER,
         kind == MODE, kind == END],
        [note_ok, dur_ok, broken_ok, tuplet_ok, bar_ok, meter_ok, mode_ok, end_ok],
        False,
    )
    # The second ending comes right after the repeat that closes the first (':| |2'), as
    # written in the v2 data; left for later, a model easily forgets it and never ends.
    allowed = jnp.where(state.need_second, bar_kind == 4, allowed)
    # Broken rhythms join notes of equal length ('c2>d2', not 'c2>d'), as ABC players expect
    # and the v2 data writes (unequal pairs: 55 of 19,157 in the first 5,000 tunes).
    pair_one = state.pair_num == state.pair_den
    matches = (table["num"] == state.pair_num) & (table["den"] == state.pair_den)
    pair_ok = jnp.where(kind == DURATION, matches & ~pair_one,
                        jnp.where(kind == BROKEN, jnp.where(plain, pair_one, matches), pair_one))
    allowed = allowed & (~state.pair_due | pair_ok)

    is_note, is_dur, is_broken = kind == NOTE, kind == DURATION, kind == BROKEN
    is_tuplet, is_bar, is_meter = kind == TUPLET, kind == BAR, kind == METER
    body_token = ~is_meter & (kind != MODE) & (kind != END)
    closes_bar = is_bar & state.bar_used
    phase = jnp.where(is_meter & (state.phase == HEADER_METER), HEADER_MODE,
                      jnp.where(body_token | (kind == MODE), BODY, state.phase))
    new = State(
        phase=jnp.broadcast_to(phase, allowed.shape),
        bar_len=jnp.where(is_meter, table["bar_len"], state.bar_len),
        compound=jnp.where(is_meter, table["compound"], state.compound),
        pos=jnp.select([is_note, is_dur, is_broken, is_bar], [note_pos, dur_pos, broken_pos, 0], state.pos),
        last=jnp.select([is_note, is_dur, is_broken], [value, new_last, long_], state.last),
        can_dur=is_note,
        prev_dur=is_dur,
        pending=jnp.where(is_broken, table["broken"], jnp.where(is_note, 0, state.pending)),
        tup_left=jnp.where(is_tuplet, table["tup_p"], jnp.where(is_note & in_tuplet, state.tup_left - 1,
                                                               state.tup_left)),
        tup_num=jnp.where(is_tuplet, tup_q, state.tup_num),
        tup_den=jnp.where(is_tuplet, table["tup_p"], state.tup_den),
        need_note=is_tuplet,
        bar_used=jnp.where(is_bar, False, state.bar_used | is_note),
        opened_by_repeat=jnp.where(is_bar, boundary, state.opened_by_repeat),
        bars=state.bars + closes_bar,
        repeat_open=jnp.where(is_bar & (bar_kind == 1), True,
                              jnp.where(is_bar & (bar_kind == 2), False, state.repeat_open)),
        first_ending=jnp.where(is_bar & (bar_kind == 3), True,
                               jnp.where(is_bar & (bar_kind == 4), False, state.first_ending)),
        closed_after_first=jnp.where(is_bar & (bar_kind == 3), False,
                                     jnp.where(is_bar & (bar_kind == 2), True, state.closed_after_first)),
        need_second=jnp.broadcast_to(is_bar & (bar_kind == 2) & state.first_ending, allowed.shape),
        after_bar=jnp.broadcast_to(jnp.where(is_bar, bar_kind, -1), allowed.shape),
        mult_num=jnp.where(is_dur, table["num"], jnp.where(is_note, 1, state.mult_num)),
        mult_den=jnp.where(is_dur, table["den"], jnp.where(is_note, 1, state.mult_den)),
        pair_num=jnp.where(is_broken, jnp.where(plain & state.prev_dur, state.mult_num, table["num"]),
                           state.pair_num),
        pair_den=jnp.where(is_broken, jnp.where(plain & state.prev_dur, state.mult_den, table["den"]),
                           state.pair_den),
        pair_due=is_note & (state.pending > 0),
        last_in_tuplet=jnp.where(is_note, in_tuplet, state.last_in_tuplet),
    )
    return new, allowed & _feasible(new)


def _ceil_div(x: Array, d: int) -> Array:
    return (x + d - 1) // d


def _feasible(state: State) -> Array:
    """Whether the bar can still be completed: the notes still owed (the rest of a tuplet at
    their shortest, an eighth of their length through '/8'; the second note of a broken
    rhythm at exactly the length of the first) fit in what is left of the bar, counting that
    the last note may still be shortened by a duration token, or must take the length its
    broken-rhythm partner has. Outside the body, or with no meter, everything is feasible."""
    in_tuplet = state.tup_left > 0
    tuplet_note = TICKS * state.tup_num // state.tup_den  # whole: TICKS divides by every p
    shortest = _ceil_div(tuplet_note, 8)
    second, whole = _scaled(jnp.where(in_tuplet, tuplet_note, TICKS), state.pair_num, state.pair_den)
    second, whole2 = _scaled(second, jnp.where(state.pending == 2, 3, 1), 2)
    owed = (jnp.where(in_tuplet, state.tup_left - (state.pending > 0), 0) * shortest
            + jnp.where(state.pending > 0, second, 0))
    # The last note as it will stand: shortened as far as '/8' allows, or matched to its pair.
    paired, whole3 = _scaled(state.last, state.pair_num, state.pair_den)
    pos = jnp.where(state.pair_due, state.pos + paired - state.last,
                    state.pos - jnp.where(state.can_dur, state.last - _ceil_div(state.last, 8), 0))
    exact = (whole & whole2) | (state.pending == 0)
    exact = exact & (whole3 | ~state.pair_due)
    check = (state.phase == BODY) & (state.bar_len > 0)
    return ~check | (exact & (pos + owed <= state.bar_len))


def _table(tokens: Array | None = None) -> dict:
    table = {k: jnp.asarray(v) for k, v in token_table()._asdict().items()}
    if tokens is None:
        return table  # [vocab]
    return {k: v[tokens] for k, v in table.items()}  # [batch]


def allowed(state: State) -> Array:
    """[batch, vocab] True where the token keeps the tune valid. A tune with no such token
    (rare: see the module docstring) may only end."""
    expanded = State(*(x[:, None] for x in state))
    _, ok = _transition(expanded, _table())
    stuck = ~jnp.any(ok, axis=-1, keepdims=True)
    return ok | (stuck & (jnp.arange(vocab.VOCAB_SIZE) == vocab.END_ID))


def advance(state: State, tokens: Array) -> State:
    """The state after each tune emits ``tokens`` [batch] (allowed or forced)."""
    new, _ = _transition(state, _table(tokens))
    return new


def mask_logits(logits: Array, state: State) -> Array:
    """``logits`` [batch, vocab] with the tokens that would break the tune set to -inf."""
    return jnp.where(allowed(state), logits, -jnp.inf)


def run(tokens: Array) -> State:
    """The state after ``<s>`` and then each of ``tokens`` [batch, time] (ids)."""
    state = initial_state(tokens.shape[0])
    if tokens.shape[1] == 0:
        return state
    return jax.lax.fori_loop(0, tokens.shape[1], lambda t, s: advance(s, tokens[:, t]), state)
