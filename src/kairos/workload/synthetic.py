"""Synthetic workloads: open-loop arrivals, sampled lengths, shared system prompts, sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kairos.errors import KairosError
from kairos.workload.arrivals import arrival_times
from kairos.workload.classes import CLASS_LENGTH_STREAM, CLASS_STREAM, class_streams, pick_by_share
from kairos.workload.lengths import sample_lengths
from kairos.workload.spec import RequestSpec, Span, content_key
from kairos.workload.tracefile import without_gc

if TYPE_CHECKING:
    from kairos.workload.config import PrefixConfig, SessionConfig, WorkloadConfig

SYNTHETIC_DEFAULT_REQUESTS = 600


@without_gc
def generate_synthetic(cfg: WorkloadConfig, seed: int) -> list[RequestSpec]:
    """The synthetic workload described by `cfg`; the same cfg and seed give the same list.

    Each aspect (arrivals, input and output lengths, prefix picks, sessions) draws
    from its own stream spawned from `default_rng(seed)`, so changing, say, the
    output lengths leaves the arrival times unchanged: A/B comparisons then differ
    only in what was changed.
    """
    if seed < 0:
        raise KairosError(f"seed must be >= 0, got {seed}")
    n = cfg.num_requests or SYNTHETIC_DEFAULT_REQUESTS
    arrival_rng, input_rng, output_rng, prefix_rng, session_rng = (
        np.random.default_rng(seed).spawn(5)
    )
    user = sample_lengths(cfg.input_len, n, input_rng, "input")
    output = sample_lengths(cfg.output_len, n, output_rng, "output")
    if cfg.sessions is None:
        user, output = _class_lengths(cfg, seed, np.arange(n), user, output)
        arrivals = arrival_times(cfg.arrival, n, cfg.rate, cfg.cv, arrival_rng).tolist()
        heads = _prefix_heads(cfg.prefixes, n, prefix_rng)
        return [
            RequestSpec(f"syn-{i}", arrivals[i], _head_len(heads[i]) + user[i], output[i], heads[i])
            for i in range(n)
        ]
    return _sessions(cfg, cfg.sessions, seed, n, user, output, arrival_rng, prefix_rng, session_rng)


def _class_lengths(
    cfg: WorkloadConfig, seed: int, units: np.ndarray, user: np.ndarray, output: np.ndarray
) -> tuple[list[int], list[int]]:
    """User-message and answer lengths, each class's own where it sets them (as lists).

    `units[i]` is request i's client unit (itself, or its session), whose class is
    the one `assign_classes` later gives it: the same stream, the same draws. Each
    class draws all n lengths from a stream of its own, so its lengths do not
    depend on which requests the other classes got.
    """
    classes = cfg.classes
    if not any(c.input_len is not None or c.output_len is not None for c in classes):
        return user.tolist(), output.tolist()
    streams = class_streams(seed)
    picks = pick_by_share([c.share for c in classes], int(units.max()) + 1, streams[CLASS_STREAM])
    of_request = picks[units]
    user, output = user.copy(), output.copy()
    for k, (cls, rng) in enumerate(zip(classes, streams[CLASS_LENGTH_STREAM].spawn(len(classes)))):
        input_rng, output_rng = rng.spawn(2)
        mine = of_request == k
        if cls.input_len is not None:
            user[mine] = sample_lengths(cls.input_len, len(units), input_rng, "input")[mine]
        if cls.output_len is not None:
            output[mine] = sample_lengths(cls.output_len, len(units), output_rng, "output")[mine]
    return user.tolist(), output.tolist()


def _sessions(
    cfg: WorkloadConfig,
    sessions: SessionConfig,
    seed: int,
    n: int,
    user: np.ndarray,
    output: np.ndarray,
    arrival_rng: np.random.Generator,
    prefix_rng: np.random.Generator,
    session_rng: np.random.Generator,
) -> list[RequestSpec]:
    """`n` requests grouped into closed-loop multi-turn sessions (the last one cut short).

    Turn k's prompt is the system prefix (if any), then every earlier user message
    and answer of the session, then its new user message. One content stream per
    session covers all of that and the turn's own answer, so turn k+1 finds turn
    k's prompt and answer as a shareable prefix. Later turns arrive `think_s` after
    their predecessor finishes; their arrival_s is the session's start.
    """
    turns = sample_lengths(sessions.turns, n, session_rng)  # n sessions always suffice
    ends = np.cumsum(turns)
    num_sessions = int(np.searchsorted(ends, n)) + 1
    turns[num_sessions - 1] -= ends[num_sessions - 1] - n
    session_of = np.searchsorted(ends, np.arange(n), side="right")
    user, output = _class_lengths(cfg, seed, session_of, user, output)
    think = session_rng.exponential(sessions.think_time_s, size=n).tolist()
    starts = arrival_times(cfg.arrival, num_sessions, cfg.rate, cfg.cv, arrival_rng).tolist()
    heads = _prefix_heads(cfg.prefixes, num_sessions, prefix_rng)
    specs: list[RequestSpec] = []
    for sid in range(num_sessions):
        stream = content_key("session", seed, sid)
        head = heads[sid]
        context = 0  # session tokens (user messages and answers) before this turn
        previous: str | None = None
        for turn in range(1, int(turns[sid]) + 1):
            i = len(specs)
            prompt = context + user[i]
            request_id = f"syn-s{sid}-t{turn}"
            specs.append(
                RequestSpec(
                    request_id,
                    starts[sid],
                    _head_len(head) + prompt,
                    output[i],
                    head + (Span(stream, 0, prompt + output[i]),),
                    session_id=f"syn-s{sid}",
                    after=previous,
                    think_s=0.0 if previous is None else think[i],
                )
            )
            context = prompt + output[i]
            previous = request_id
    return specs


def _prefix_heads(
    prefixes: PrefixConfig | None, count: int, rng: np.random.Generator
) -> list[tuple[Span, ...]]:
    """For each of `count` requests or sessions, the spans of its system prompt (or none)."""
    if prefixes is None:
        return [()] * count
    choices = [
        (Span(content_key("sysprompt", i), 0, prefixes.length),) for i in range(prefixes.num)
    ]
    if prefixes.popularity == "zipf":
        weights = 1.0 / np.arange(1, prefixes.num + 1) ** prefixes.zipf_exponent
        picks = rng.choice(prefixes.num, size=count, p=weights / weights.sum())
    else:
        picks = rng.integers(0, prefixes.num, size=count)
    return [choices[k] for k in picks.tolist()]


def _head_len(head: tuple[Span, ...]) -> int:
    return sum(span.length for span in head)
