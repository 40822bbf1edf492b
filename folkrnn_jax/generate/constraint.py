"""Structure-constrained sampling: a token automaton that only lets player-valid tunes be written.

``allowed(state)`` gives, for every tune of a batch, the tokens that keep the tune valid under
``folkrnn_jax.music.structure`` (``tune_problems`` finds nothing in a tune that ends under the
constraint) and playable as abc2midi reads it (no bar-length warning, no rhythm it rejects),
and ``advance(state, token)`` moves the automaton on by the emitted token. Both are jit-friendly
array code over small integer states, so the sampler applies the constraint inside its
compiled loop: the model's distribution is renormalised over the allowed tokens at every step
(temperature, top-k and top-p then act on that).

The rules, every one decidable from the past alone:

* a header first: ``M:`` then ``K:`` (forced prefix tokens are taken as they come);
* **bar lengths, as abc2midi 4.x checks them.** abc2midi counts each bar at ``|`` and at the
  bar line of an ending (``|1``, ``|2``) and warns unless it holds exactly one bar, except the
  first bar of the tune on its first pass (a pickup). At ``|:`` and ``:|`` it checks only a bar
  that is full (or the first bar): a shorter bar is carried over and counted together with the
  bar played next, which after ``:|`` is the first bar after the matching ``|:`` (or the first
  bar of the tune when there is no ``|:``) on the repeat and the next bar on the way on. So:

  - every bar closed by ``|``, ``|1`` or ``|2`` is full, counting what a short bar before
    ``|:`` or ``:|`` carried into it; only the tune's first bar may be short (a pickup);
  - a bar closed short by ``|:`` or ``:|`` carries its length into the next bar, which must
    then make up one bar with it;
  - the bar that closes a repeat (``:|``) and the first bar of the repeated part add up to
    exactly one bar: with a pickup of length p opening the part, the closing bar has
    bar_len - p; with a full first bar, a full closing bar. (A pickup before ``|:``, as in
    ``A |: c ... :|``, is the tune's first bar: the part then starts with a full bar.)
  - the second ending starts a fresh bar (abc2midi skips the first ending and its ``:|``);
  - no note may overfill a bar (a note may only start if a duration token can still make it
    fit, and then only such a duration token may follow);
* **parts.** The body is cut into sections at ``|:``, ``:|`` and the end (a first and second
  ending belong to one section). Every section holds 4, 8, 12 or 16 bars (``PART_BARS``: the
  part lengths of the training data), counting a pickup and the short bar that completes it as
  one bar; a section outside ``|: ... :|`` holds at most ``FREE_BARS`` (8), so that a part is
  closed (by ``:|``, ``|:`` or the end) where the data's parts end rather than run on
  unrepeated; the tune may end only after a bar line that closes such a section, after at
  least ``MIN_SECTIONS`` and at most ``MAX_SECTIONS`` of them. A later section holds no more
  bars than the first (B no longer than A, as in 95% of the data's AABB tunes), and a second
  ending may bring a part of more than 8 bars back to the length its first ending gave it (so
  a 16-bar part with endings is never left with an empty ``|2``). A part that opens with a pickup and may be repeated ends
  at its 4th or 8th bar (its 8th bar holds at most bar_len - pickup, so ``:|`` or ``|:`` must
  close it; a model that forgot the pickup cannot write a full closing bar and then find
  ``:|`` refused): the data's parts are 4 or 8 bars long in nine of ten;
* repeats: ``:|`` closes an open ``|:`` or repeats from the start or from the last ``:|`` (as
  ABC reads ``A :| B :|``; abc2midi says "Assuming repeat" and counts the bars as above),
  no ``|:`` while one is open, ``|1`` opens only within a repeat and needs a later ``:|`` and
  then straight away ``|2``, the tune ends only with every repeat and ending closed and right
  after a bar line (``|`` or ``:|``);
* **rhythms from the data.** Durations and broken rhythms only those the training tunes of the
  current meter use, tuplets only with the note lengths they use them with
  (``folkrnn_jax.generate.rhythms``: no ``/3``, ``/8`` or ``(2`` unless the data has them);
* tuplets of equal notes: every note of a tuplet carries the same duration token, and the
  tuplet starts at a multiple of its own length from the start of the bar (a triplet of
  eighths on a quarter beat), except in the pickup; a tuplet is followed by its notes before a
  bar line or the end;
* durations follow a note, broken rhythms a note or its duration, and a broken rhythm a note;
  a broken rhythm joins two notes of the same written length outside tuplets, not chained
  (``c2>d2``, as ABC players need it);
* no empty bars (two bar lines in a row only as ``:| |:`` and ``:| |2``); chords (``[``,
  ``]``) are not written; ``K:`` changes only at the start of a bar after the first, ``M:``
  changes only at the start of a section after the first bar.

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

from folkrnn_jax.generate import rhythms
from folkrnn_jax.music import rhythm, vocab

Array = jax.Array

TICKS = 2**6 * 3**3 * 5 * 7  # per eighth note: 60,480
(OTHER, NOTE, DURATION, BROKEN, TUPLET, BAR, METER, MODE, END) = range(9)
BAR_KINDS = ("|", "|:", ":|", "|1", "|2")
PLAIN, OPEN, CLOSE, FIRST, SECOND = range(5)  # indices in BAR_KINDS
HEADER_METER, HEADER_MODE, BODY = 0, 1, 2
# Section lengths in bars: the part lengths of the training tunes (8 bars for three parts in
# four, then 4, 16 and 12; every other length is under 1%).
PART_BARS = (4, 8, 12, 16)
MAX_SECTIONS = 2  # one or two distinct parts in 85% of the training tunes (two: 79%)
MIN_SECTIONS = 2  # two or more distinct parts in 92% of the training tunes
FREE_BARS = 8  # the longest section outside '|: ... :|' (a part that may still be repeated)
MAX_TUPLET = 10  # tuplet tokens are '(2' ... '(9'
# The duration a tuplet's notes carry: index 0 is none (x1), then index 1 + i is DURATIONS[i].
DURATIONS = tuple(t for t in vocab.TOKENS if rhythm.parse_duration(t) is not None)
MULTS = (Fraction(1),) + tuple(Fraction(rhythm.parse_duration(t)) for t in DURATIONS)


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
    meter: np.ndarray  # index in vocab.METER_TOKENS of an M: token
    mult: np.ndarray  # index in MULTS of a duration token (0 otherwise)
    ids: np.ndarray  # the token's id


@functools.lru_cache(maxsize=1)
def token_table() -> TokenTable:
    size = vocab.VOCAB_SIZE
    kind = np.full((size,), OTHER, np.int32)
    num, den, broken, bar = (np.ones((size,), np.int32), np.ones((size,), np.int32),
                             np.zeros((size,), np.int32), np.zeros((size,), np.int32))
    tup_p, tup_qs, tup_qc, bar_len = (np.ones((size,), np.int32), np.ones((size,), np.int32),
                                      np.ones((size,), np.int32), np.zeros((size,), np.int32))
    compound = np.zeros((size,), bool)
    meter, mult = np.zeros((size,), np.int32), np.zeros((size,), np.int32)
    for i, token in enumerate(vocab.TOKENS):
        if token == vocab.END:
            kind[i] = END
        elif token in BAR_KINDS:
            kind[i], bar[i] = BAR, BAR_KINDS.index(token)
        elif token.startswith("M:"):
            kind[i] = METER
            bar_len[i] = int(rhythm.meter_bar_length(token) * TICKS)
            compound[i] = token in rhythm.COMPOUND_METERS
            meter[i] = vocab.METER_TOKENS.index(token)
        elif token.startswith("K:"):
            kind[i] = MODE
        elif rhythm.is_note(token):
            kind[i] = NOTE
        elif rhythm.parse_duration(token) is not None:
            d = Fraction(rhythm.parse_duration(token))
            kind[i], num[i], den[i] = DURATION, d.numerator, d.denominator
            mult[i] = 1 + DURATIONS.index(token)
        elif rhythm.parse_broken(token) is not None:
            d, direction = rhythm.parse_broken(token)
            kind[i], num[i], den[i] = BROKEN, d.numerator, d.denominator
            broken[i] = 1 if direction == ">" else 2
        elif rhythm.tuplet_ratio(token, None) is not None:
            kind[i] = TUPLET
            tup_p[i], tup_qs[i] = rhythm.tuplet_ratio(token, None)
            tup_qc[i] = rhythm.tuplet_ratio(token, "M:6/8")[1]
    return TokenTable(kind, num, den, broken, bar, tup_p, tup_qs, tup_qc, bar_len, compound, meter, mult,
                      np.arange(size, dtype=np.int32))


class RhythmTable(NamedTuple):
    """The rhythms the training data uses (``rhythms.load_table``), as arrays by meter index."""

    rhythm_ok: np.ndarray  # [meters, vocab] a duration or broken-rhythm token the meter's tunes use
    tuplet_ok: np.ndarray  # [meters, MAX_TUPLET, len(MULTS)] tuplet '(p' with notes of that duration
    tuplet_len: np.ndarray  # [2 (compound), MAX_TUPLET, len(MULTS)] ticks of such a whole tuplet
    short_num: np.ndarray  # [meters] the shortest duration multiplier the meter's tunes use
    short_den: np.ndarray


@functools.lru_cache(maxsize=1)
def rhythm_table() -> RhythmTable:
    table = rhythms.load_table()
    meters, size = len(vocab.METER_TOKENS), vocab.VOCAB_SIZE
    rhythm_ok = np.zeros((meters, size), bool)
    tuplet_ok = np.zeros((meters, MAX_TUPLET, len(MULTS)), bool)
    tuplet_len = np.zeros((2, MAX_TUPLET, len(MULTS)), np.int32)
    short_num, short_den = np.ones((meters,), np.int32), np.ones((meters,), np.int32)
    for m, meter in enumerate(vocab.METER_TOKENS):
        entry = table.get(meter, {"rhythms": [], "tuplets": {}})
        for token in entry["rhythms"]:
            rhythm_ok[m, vocab.TOKENS.index(token)] = True
        shortest = min([Fraction(rhythm.parse_duration(t)) for t in entry["rhythms"]
                        if rhythm.parse_duration(t) is not None] + [Fraction(1)])
        short_num[m], short_den[m] = shortest.numerator, shortest.denominator
        for token, durations in entry["tuplets"].items():
            p = rhythm.tuplet_ratio(token, meter)[0]
            for duration in durations:
                tuplet_ok[m, p, 1 + DURATIONS.index(duration) if duration else 0] = True
    for compound, meter in ((0, "M:4/4"), (1, "M:6/8")):
        for p in range(2, MAX_TUPLET):
            q = rhythm.tuplet_ratio(f"({p}", meter)[1]
            for j, mult in enumerate(MULTS):
                length = q * TICKS * mult
                tuplet_len[compound, p, j] = int(length) if length.denominator == 1 else 0
    return RhythmTable(rhythm_ok, tuplet_ok, tuplet_len, short_num, short_den)


class State(NamedTuple):
    """The automaton's state, one entry per tune ([batch] arrays)."""

    phase: Array  # HEADER_METER, HEADER_MODE or BODY
    bar_len: Array  # ticks per bar of the current meter (0: none yet)
    compound: Array  # the current meter is 6/8, 9/8 or 12/8 (tuplet defaults)
    meter: Array  # index in vocab.METER_TOKENS of the current meter
    pos: Array  # ticks in the current bar (with what a short bar carried in), the last note counted at its current length
    carry_in: Array  # ticks a short bar before '|:' or ':|' carried into the current bar
    last: Array  # ticks of the last note (what a duration token multiplies)
    can_dur: Array  # a duration token may follow (right after a note)
    prev_dur: Array  # the previous token was a duration (a plain '>'/'<' may follow)
    pending: Array  # broken rhythm waiting for its second note: 0 none, 1 '>', 2 '<'
    tup_left: Array  # notes left in the current tuplet
    tup_num: Array  # tuplet scale q/p
    tup_den: Array  # (p)
    tup_start: Array  # pos where the current tuplet started
    tup_first: Array  # the last note is the first note of its tuplet (its duration chooses the tuplet's)
    tup_set: Array  # the tuplet's note duration is chosen: tup_mnum / tup_mden
    tup_mnum: Array
    tup_mden: Array
    need_note: Array  # a tuplet was just opened: a note must come next
    bar_used: Array  # the current bar holds a note
    bars: Array  # bars closed so far
    sec_bars: Array  # bars of the current section (a pickup and the short bar completing it: one)
    sec_common: Array  # sec_bars at '|1' (the second ending continues from there)
    sections: Array  # sections closed so far
    open_pending: Array  # the current bar is the first of the repeated part (after '|:' or at the start)
    open_len: Array  # ticks of the repeated part's first bar, without what was carried into it
    may_close: Array  # ':|' may close the section without a '|:' (repeat from the start or the last ':|')
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
    last_paired: Array  # the last note is the second note of a broken rhythm
    in_second: Array  # in the second ending ('|2' until the section closes)
    part_len: Array  # bars of the repeated part whose first ending ':|' closed (the second ending matches it)
    first_part: Array  # bars of the tune's first section (0 until it closes): no later section is longer


def initial_state(batch: int) -> State:
    """The state after ``<s>``."""
    zero = jnp.zeros((batch,), jnp.int32)
    one = zero + 1
    false = jnp.zeros((batch,), bool)
    return State(
        phase=zero + HEADER_METER, bar_len=zero, compound=false, meter=zero, pos=zero, carry_in=zero,
        last=zero, can_dur=false, prev_dur=false, pending=zero, tup_left=zero, tup_num=one, tup_den=one,
        tup_start=zero, tup_first=false, tup_set=false, tup_mnum=one, tup_mden=one, need_note=false,
        bar_used=false, bars=zero, sec_bars=zero, sec_common=zero, sections=zero, open_pending=~false,
        open_len=zero, may_close=~false, repeat_open=false, first_ending=false, closed_after_first=false,
        need_second=false, after_bar=zero - 1, mult_num=one, mult_den=one, pair_num=one, pair_den=one,
        pair_due=false, last_in_tuplet=false, last_paired=false, in_second=false, part_len=zero,
        first_part=zero,
    )


def _scaled(x: Array, num: Array, den: Array) -> tuple[Array, Array]:
    """x * num / den and whether it is a whole number of ticks."""
    product = x * num
    return product // den, product % den == 0


def _part_ok(bars: Array) -> Array:
    ok = jnp.zeros((PART_BARS[-1] + 2,), bool).at[jnp.asarray(PART_BARS)].set(True)
    return ok[jnp.clip(bars, 0, PART_BARS[-1] + 1)]


def _tuplet_choices(rt: dict, meter: Array, compound: Array, p: Array, start: Array, free: Array,
                    bar_len: Array) -> Array:
    """[..., len(MULTS)] the note durations a tuplet '(p' starting at ``start`` may take: used in
    the data, starting at a multiple of its own length (unless ``free``: the pickup), fitting
    the bar."""
    length = rt["tuplet_len"][compound.astype(jnp.int32), p]
    start, free, bar_len = start[..., None], free[..., None], bar_len[..., None]
    aligned = free | (start % jnp.maximum(length, 1) == 0)
    return rt["tuplet_ok"][meter, p] & (length > 0) & aligned & (start + length <= bar_len)


def _transition(state: State, table: dict, rt: dict) -> tuple[State, Array]:
    """The state after each candidate token and whether the token is allowed. ``state``
    fields and ``table`` entries broadcast against each other ([batch, 1] x [vocab], or
    [batch] x [batch] for the emitted token)."""
    kind = table["kind"]
    in_body = state.phase == BODY
    bar_empty = (state.pos == 0) & ~state.bar_used
    quiet = ~state.need_note & (state.pending == 0) & (state.tup_left == 0)
    over = state.pos > state.bar_len
    first_bar = state.bars == 0
    # The data's durations and broken rhythms for this meter (outside tuplets).
    attested = rt["rhythm_ok"][state.meter, table["ids"]]
    # A new section may start (MAX_SECTIONS), and a section of its longest length takes no more.
    longest = _longest(state)
    room = (state.sections < MAX_SECTIONS) & ~((state.sec_bars >= longest) & ~state.bar_used)

    # Notes: base length x tuplet scale x the factor of a pending broken rhythm.
    in_tuplet = state.tup_left > 0
    value, whole1 = _scaled(jnp.full_like(state.pos, TICKS), jnp.where(in_tuplet, state.tup_num, 1),
                            jnp.where(in_tuplet, state.tup_den, 1))
    value, whole2 = _scaled(value, jnp.where(state.pending == 2, 3, 1), jnp.where(state.pending == 0, 1, 2))
    note_pos = state.pos + value
    note_ok = in_body & ~over & whole1 & whole2 & (state.bar_len > 0) & room

    # Durations multiply the last note. On a tuplet's first note the duration chooses the
    # tuplet's (one the data uses, aligned, fitting); its other notes repeat it.
    new_last, whole = _scaled(state.last, table["num"], table["den"])
    dur_pos = state.pos + new_last - state.last
    limit = _bar_limit(state)
    choices = _tuplet_choices(rt, state.meter, state.compound, state.tup_den, state.tup_start, first_bar, limit)
    chosen = jnp.any(choices & (jnp.arange(len(MULTS)) == table["mult"][..., None]), axis=-1)
    repeats = (table["num"] == state.tup_mnum) & (table["den"] == state.tup_mden)
    dur_rhythm = jnp.where(state.last_in_tuplet, jnp.where(state.tup_first, chosen, state.tup_set & repeats),
                           attested)
    dur_ok = in_body & state.can_dur & whole & dur_rhythm

    # Broken rhythms: the note before (times d, as a duration token would make it) becomes
    # x3/2 ('>') or x1/2 ('<').
    long_, whole_l = _scaled(new_last, jnp.where(table["broken"] == 1, 3, 1), 2)
    plain = (table["num"] == 1) & (table["den"] == 1)
    # Not on a tuplet note, not chained onto the second note of a broken rhythm (abc2midi cannot
    # play either; of the 41,508 broken rhythms in the first 5,000 v2 tunes and the default
    # corpus, 21 are on a tuplet note and 10 chained).
    broken_ok = (in_body & whole & whole_l & (state.last > 0) & (state.pending == 0) & attested
                 & (state.can_dur | (state.prev_dur & plain)) & ~state.last_in_tuplet & ~state.last_paired
                 & (state.tup_left == 0))
    broken_pos = state.pos + long_ - state.last

    # Tuplets: one the data uses in this meter, with a note duration that fits here.
    tup_q = jnp.where(state.compound, table["tup_q_compound"], table["tup_q_simple"])
    tup_fits = jnp.any(_tuplet_choices(rt, state.meter, state.compound, table["tup_p"], state.pos, first_bar,
                                       limit), axis=-1)
    tuplet_ok = in_body & (state.tup_left == 0) & ~state.need_note & (state.pending == 0) & tup_fits & room

    # Bar lines (see the module docstring for abc2midi's bar check).
    bar_kind = jnp.where(kind == BAR, table["bar"], -1)
    full = state.pos == state.bar_len
    short = ~full & ~first_bar  # a short bar that a soft bar line carries over
    # The bar counts in its section unless it is a short first bar or completes a carried one.
    counts = state.bar_used & ~(first_bar & ~full) & (state.carry_in == 0)
    sec_after = state.sec_bars + counts
    forced = state.repeat_open  # the section can only be closed by ':|'
    hard = (bar_kind == PLAIN) | (bar_kind == FIRST)
    hard_ok = (full | first_bar) & (sec_after + (forced | (bar_kind == FIRST)) <= longest)
    # After a plain bar line that fills a free section only the end may come: not before MIN_SECTIONS.
    hard_ok = hard_ok & ~(~state.repeat_open & (sec_after >= longest) & (state.sections + 1 < MIN_SECTIONS))
    # ':|': the closing bar and the repeated part's first bar make one bar on the repeat.
    own = jnp.where(state.open_pending, state.pos - state.carry_in, state.open_len)
    carried = jnp.where(full | first_bar, 0, state.pos)
    close_ok = ((state.repeat_open | state.may_close) & (carried + own == state.bar_len) & _part_ok(sec_after)
                & (~state.open_pending | (full & (state.carry_in == 0))))
    # '|:' closes the section before it, if that holds any bars, and starts another.
    open_ok = (~state.repeat_open & jnp.where(sec_after > 0, _part_ok(sec_after) & (state.sections + 1 < MAX_SECTIONS),
                                               state.sections < MAX_SECTIONS))
    kind_ok = jnp.select(
        [hard & (bar_kind == FIRST), hard, bar_kind == OPEN, bar_kind == CLOSE, bar_kind == SECOND],
        [hard_ok & state.repeat_open & ~state.first_ending, hard_ok, open_ok, close_ok,
         state.first_ending & state.closed_after_first],
        False)
    # No empty bars: two bar lines in a row only as ':| |:' or ':| |2'.
    adjacent_ok = (state.after_bar < 0) | ((state.after_bar == CLOSE) & ((bar_kind == OPEN) | (bar_kind == SECOND)))
    bar_ok = in_body & ~over & quiet & kind_ok & adjacent_ok & (state.bar_used | (bar_kind == OPEN) | (bar_kind == SECOND))

    # Header tokens, and M:/K: changes at the start of a bar.
    # (A meter change within a section would break the repeat's arithmetic: at a section start.)
    change_ok = in_body & bar_empty & quiet & (state.bars > 0) & ((kind == MODE) | (state.sec_bars == 0)) & room
    meter_ok = (state.phase == HEADER_METER) | change_ok
    mode_ok = (state.phase == HEADER_MODE) | change_ok
    end_ok = (in_body & quiet & ((state.after_bar == PLAIN) | (state.after_bar == CLOSE)) & ~state.repeat_open
              & ~state.first_ending & jnp.where(state.sec_bars > 0, _part_ok(state.sec_bars), True)
              & (state.sections + (state.sec_bars > 0) >= MIN_SECTIONS))

    allowed = jnp.select(
        [kind == NOTE, kind == DURATION, kind == BROKEN, kind == TUPLET, kind == BAR, kind == METER,
         kind == MODE, kind == END],
        [note_ok, dur_ok, broken_ok, tuplet_ok, bar_ok, meter_ok, mode_ok, end_ok],
        False,
    )
    # The second ending comes right after the repeat that closes the first (':| |2'), as
    # written in the v2 data; left for later, a model easily forgets it and never ends.
    allowed = jnp.where(state.need_second, bar_kind == SECOND, allowed)
    # Broken rhythms join notes of equal length ('c2>d2', not 'c2>d'), as ABC players expect
    # and the v2 data writes (unequal pairs: 55 of 19,157 in the first 5,000 tunes).
    pair_one = state.pair_num == state.pair_den
    matches = (table["num"] == state.pair_num) & (table["den"] == state.pair_den)
    pair_ok = jnp.where(kind == DURATION, matches & ~pair_one,
                        jnp.where(kind == BROKEN, jnp.where(plain, pair_one, matches), pair_one))
    allowed = allowed & (~state.pair_due | pair_ok)
    # A tuplet note left without a duration token lasts x1: the tuplet's notes must allow it.
    bare = jnp.where(state.tup_first, choices[..., 0],
                     ~state.tup_set | ((state.tup_mnum == 1) & (state.tup_mden == 1)))
    allowed = allowed & (~(state.can_dur & state.last_in_tuplet) | (kind == DURATION) | bare)

    is_note, is_dur, is_broken = kind == NOTE, kind == DURATION, kind == BROKEN
    is_tuplet, is_bar, is_meter = kind == TUPLET, kind == BAR, kind == METER
    body_token = ~is_meter & (kind != MODE) & (kind != END)
    closes_bar = is_bar & state.bar_used
    phase = jnp.where(is_meter & (state.phase == HEADER_METER), HEADER_MODE,
                      jnp.where(body_token | (kind == MODE), BODY, state.phase))
    # Where the next bar starts counting: 0 after '|', '|1', '|2' or a bar that is full or the
    # first; what a short bar had after '|:' and ':|'.
    soft = (bar_kind == OPEN) | (bar_kind == CLOSE)
    next_pos = jnp.where(soft & short & state.bar_used, state.pos, jnp.where(soft & ~state.bar_used, state.pos, 0))
    next_pos = jnp.where(bar_kind == SECOND, 0, next_pos)
    second_note = is_note & in_tuplet & (state.tup_left < state.tup_den)
    fix_mult = second_note & ~state.tup_set
    new_sec = jnp.select([bar_kind == CLOSE, bar_kind == OPEN, bar_kind == SECOND], [0, 0, state.sec_common],
                         jnp.where(closes_bar, sec_after, state.sec_bars))
    new = State(
        phase=jnp.broadcast_to(phase, allowed.shape),
        bar_len=jnp.where(is_meter, table["bar_len"], state.bar_len),
        compound=jnp.where(is_meter, table["compound"], state.compound),
        meter=jnp.where(is_meter, table["meter"], state.meter),
        pos=jnp.select([is_note, is_dur, is_broken, is_bar], [note_pos, dur_pos, broken_pos, next_pos], state.pos),
        carry_in=jnp.where(is_bar, next_pos, state.carry_in),
        last=jnp.select([is_note, is_dur, is_broken], [value, new_last, long_], state.last),
        can_dur=is_note,
        prev_dur=is_dur,
        pending=jnp.where(is_broken, table["broken"], jnp.where(is_note, 0, state.pending)),
        tup_left=jnp.where(is_tuplet, table["tup_p"], jnp.where(is_note & in_tuplet, state.tup_left - 1,
                                                               state.tup_left)),
        tup_num=jnp.where(is_tuplet, tup_q, state.tup_num),
        tup_den=jnp.where(is_tuplet, table["tup_p"], state.tup_den),
        tup_start=jnp.where(is_tuplet, state.pos, state.tup_start),
        tup_first=jnp.where(is_note, in_tuplet & (state.tup_left == state.tup_den), state.tup_first),
        tup_set=jnp.where(is_tuplet, False, state.tup_set | second_note),
        tup_mnum=jnp.where(fix_mult, state.mult_num, state.tup_mnum),
        tup_mden=jnp.where(fix_mult, state.mult_den, state.tup_mden),
        need_note=is_tuplet,
        bar_used=jnp.where(is_bar, False, state.bar_used | is_note),
        bars=state.bars + closes_bar,
        sec_bars=new_sec,
        sec_common=jnp.where(bar_kind == FIRST, sec_after, state.sec_common),
        sections=state.sections + ((bar_kind == CLOSE) & ~state.first_ending) + ((bar_kind == OPEN) & (sec_after > 0)),
        open_pending=jnp.where(soft, True, jnp.where(closes_bar | (bar_kind == SECOND), False, state.open_pending)),
        open_len=jnp.where(closes_bar & state.open_pending, state.pos - state.carry_in, state.open_len),
        may_close=jnp.where(soft, True, jnp.where(bar_kind == SECOND, False, state.may_close)),
        repeat_open=jnp.where(bar_kind == OPEN, True, jnp.where(bar_kind == CLOSE, False, state.repeat_open)),
        first_ending=jnp.where(bar_kind == FIRST, True,
                               jnp.where(bar_kind == SECOND, False, state.first_ending)),
        closed_after_first=jnp.where(bar_kind == FIRST, False,
                                     jnp.where(bar_kind == CLOSE, True, state.closed_after_first)),
        need_second=jnp.broadcast_to((bar_kind == CLOSE) & state.first_ending, allowed.shape),
        after_bar=jnp.broadcast_to(bar_kind, allowed.shape),
        mult_num=jnp.where(is_dur, table["num"], jnp.where(is_note, 1, state.mult_num)),
        mult_den=jnp.where(is_dur, table["den"], jnp.where(is_note, 1, state.mult_den)),
        pair_num=jnp.where(is_broken, jnp.where(plain & state.prev_dur, state.mult_num, table["num"]),
                           state.pair_num),
        pair_den=jnp.where(is_broken, jnp.where(plain & state.prev_dur, state.mult_den, table["den"]),
                           state.pair_den),
        pair_due=is_note & (state.pending > 0),
        last_in_tuplet=jnp.where(is_note, in_tuplet, state.last_in_tuplet),
        last_paired=jnp.where(is_note, state.pending > 0, state.last_paired),
        in_second=jnp.where(bar_kind == SECOND, True, jnp.where(soft, False, state.in_second)),
        part_len=jnp.where((bar_kind == CLOSE) & state.first_ending, sec_after, state.part_len),
        first_part=jnp.where((state.sections == 0) & (((bar_kind == CLOSE) & ~state.first_ending)
                                                      | ((bar_kind == OPEN) & (sec_after > 0))),
                             sec_after, state.first_part),
    )
    return new, allowed & _feasible(new, rt)


def _ceil_div(x: Array, d: Array) -> Array:
    return (x + d - 1) // d


def _longest(state: State) -> Array:
    """The most bars the current section may hold: 16 under an open repeat, else FREE_BARS;
    a second ending may bring its part to the length the first ending gave it (past
    FREE_BARS); a later section holds no more bars than the first (B no longer than A, as in
    95% of the data's AABB tunes)."""
    second = jnp.maximum(state.part_len, FREE_BARS)
    longest = jnp.where(state.repeat_open, PART_BARS[-1], jnp.where(state.in_second, second, FREE_BARS))
    return jnp.where(state.first_part > 0, jnp.minimum(longest, state.first_part), longest)


def _bar_limit(state: State) -> Array:
    """Ticks the current bar may hold: the meter's bar, except in the 8th bar of a part that
    opened with a pickup and may still be repeated, and in the last bar an open repeat may hold
    (``_longest``: only ':|' can close it), which end where ':|' needs it (bar_len - pickup)."""
    may_repeat = state.repeat_open | state.may_close
    closing = (may_repeat & (state.carry_in == 0) & (state.bars > 0) & ~state.open_pending
               & ((state.sec_bars == 7) | (state.repeat_open & (state.sec_bars == _longest(state) - 1)))
               & (state.open_len > 0) & (state.open_len < state.bar_len))
    return jnp.where(closing, state.bar_len - state.open_len, state.bar_len)


def _feasible(state: State, rt: dict) -> Array:
    """Whether the bar can still be completed: the second note of a broken rhythm (at exactly
    the length of the first) fits in what is left of the bar, counting that the last note may
    still be shortened to the meter's shortest duration, or must take the length its
    broken-rhythm partner has, within ``_bar_limit``. A tuplet fits by construction (its note
    duration is chosen to fit). Outside the body, or with no meter, everything is feasible."""
    in_tuplet = (state.tup_left > 0) | (state.can_dur & state.last_in_tuplet)
    second, whole = _scaled(jnp.full_like(state.pos, TICKS), state.pair_num, state.pair_den)
    second, whole2 = _scaled(second, jnp.where(state.pending == 2, 3, 1), 2)
    owed = jnp.where(state.pending > 0, second, 0)
    # The last note as it will stand: shortened as far as the meter's durations allow, or
    # matched to its pair.
    paired, whole3 = _scaled(state.last, state.pair_num, state.pair_den)
    shortest = _ceil_div(state.last * rt["short_num"][state.meter], rt["short_den"][state.meter])
    pos = jnp.where(state.pair_due, state.pos + paired - state.last,
                    state.pos - jnp.where(state.can_dur, state.last - shortest, 0))
    exact = (whole & whole2) | (state.pending == 0)
    exact = exact & (whole3 | ~state.pair_due)
    limit = _bar_limit(state)
    check = (state.phase == BODY) & (state.bar_len > 0) & ~in_tuplet
    return ~check | (exact & (pos + owed <= limit))


def _table(tokens: Array | None = None) -> dict:
    table = {k: jnp.asarray(v) for k, v in token_table()._asdict().items()}
    if tokens is None:
        return table  # [vocab]
    return {k: v[tokens] for k, v in table.items()}  # [batch]


def _rhythms() -> dict:
    return {k: jnp.asarray(v) for k, v in rhythm_table()._asdict().items()}


def allowed(state: State) -> Array:
    """[batch, vocab] True where the token keeps the tune valid. A tune with no such token
    (rare: see the module docstring) may only end."""
    expanded = State(*(x[:, None] for x in state))
    _, ok = _transition(expanded, _table(), _rhythms())
    stuck = ~jnp.any(ok, axis=-1, keepdims=True)
    return ok | (stuck & (jnp.arange(vocab.VOCAB_SIZE) == vocab.END_ID))


def advance(state: State, tokens: Array) -> State:
    """The state after each tune emits ``tokens`` [batch] (allowed or forced)."""
    new, _ = _transition(state, _table(tokens), _rhythms())
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
