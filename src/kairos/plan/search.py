"""`kairos plan --search`: Optuna over deployments, each judged by its simulated capacity under the SLO.

A trial is one deployment: colocated (GPU kind, TP, replicas, max_num_batched_tokens,
max_num_seqs, router, policy) or prefill/decode pools (each pool's TP and replicas)
within a GPU budget. Its capacity (kairos.plan.capacity) gives the two numbers
aiconfigurator plots: output tokens/s per GPU at the highest rate that meets the
SLO, and tokens/s per user (1 / mean TPOT there). Two objectives use NSGA-II,
one TPE; a study with SQLite storage resumes where it stopped. Trials are
evaluated in batches on a local process pool or on Ray (kairos.plan.executors).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kairos.errors import KairosError
from kairos.plan.capacity import Capacity, find_capacity
from kairos.plan.executors import TrialExecutor
from kairos.plan.slo import SloTarget
from kairos.scenario.load import apply_overrides, validate_scenario
from kairos.scenario.schema import Scenario

OBJECTIVES = ("tokens_per_gpu", "tokens_per_user")


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The choices a trial draws from; a deployment must fit `max_gpus`."""

    gpus: tuple[str, ...]
    tps: tuple[int, ...]
    max_gpus: int
    max_num_batched_tokens: tuple[int, ...] = (2048,)
    max_num_seqs: tuple[int, ...] = (256,)
    routers: tuple[str, ...] = ("round_robin",)
    policies: tuple[str, ...] = ("fcfs",)
    disaggregated: bool = False  # also try prefill/decode pools
    # The prefill pool's max_num_seqs: 1 prefills one prompt at a time (aiconfigurator's prefill workers);
    # more packs short prompts into one chunk.
    prefill_max_num_seqs: tuple[int, ...] = (1, 8, 64)

    def __post_init__(self) -> None:
        if self.max_gpus < min(self.tps):
            raise KairosError(f"a GPU budget of {self.max_gpus} fits no replica of TP {min(self.tps)}")


@dataclass(slots=True)
class TrialResult:
    """One deployment's verdict: its settings (as scenario overrides), capacity and the two objectives."""

    number: int
    overrides: dict[str, Any]
    gpus: int
    deployment: str = ""  # the overrides in words
    capacity_rps: float = 0.0
    capacity_knob: float = 0.0  # the load knob's value there (workload.rate or workload.time_scale)
    tokens_per_gpu: float = 0.0
    tokens_per_user: float = 0.0
    tpot_mean_ms: float | None = None
    error: str | None = None
    wall_s: float = 0.0
    pareto: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SearchResult:
    """Every trial, best first by tokens/s/GPU, with the Pareto front flagged."""

    trials: list[TrialResult] = field(default_factory=list)

    @property
    def pareto(self) -> list[TrialResult]:
        return [t for t in self.trials if t.pareto]


def draw(trial: Any, space: SearchSpace) -> tuple[dict[str, Any], int]:
    """A deployment from an Optuna trial: scenario overrides and the GPUs it uses."""
    gpu = trial.suggest_categorical("gpu", list(space.gpus))
    mode = trial.suggest_categorical("mode", ["colocated", "disaggregated"] if space.disaggregated else ["colocated"])
    overrides: dict[str, Any] = {"hardware.gpu": gpu,
                                 "cluster.router": trial.suggest_categorical("router", list(space.routers)),
                                 "engine.policy": trial.suggest_categorical("policy", list(space.policies))}
    if mode == "colocated":
        tp = trial.suggest_categorical("tp", list(space.tps))
        replicas = trial.suggest_int("replicas", 1, max(1, space.max_gpus // tp))
        overrides.update({"hardware.tp": tp, "cluster.replicas": replicas,
                          "engine.max_num_batched_tokens": trial.suggest_categorical(
                              "max_num_batched_tokens", list(space.max_num_batched_tokens)),
                          "engine.max_num_seqs": trial.suggest_categorical("max_num_seqs", list(space.max_num_seqs))})
        return overrides, tp * replicas
    tp_prefill = trial.suggest_categorical("prefill_tp", list(space.tps))
    tp_decode = trial.suggest_categorical("decode_tp", list(space.tps))
    prefill = trial.suggest_int("prefill_replicas", 1, max(1, (space.max_gpus - tp_decode) // tp_prefill))
    decode = trial.suggest_int("decode_replicas", 1, max(1, (space.max_gpus - prefill * tp_prefill) // tp_decode))
    overrides["cluster.pools"] = {
        "prefill": {"replicas": prefill, "tp": tp_prefill,
                    "engine": {"max_num_batched_tokens": max(space.max_num_batched_tokens),
                               "max_num_seqs": trial.suggest_categorical(
                                   "prefill_max_num_seqs", list(space.prefill_max_num_seqs))}},
        "decode": {"replicas": decode, "tp": tp_decode,
                   "engine": {"max_num_seqs": trial.suggest_categorical("max_num_seqs", list(space.max_num_seqs))}},
    }
    return overrides, prefill * tp_prefill + decode * tp_decode


def anchors(scenario: Scenario, space: SearchSpace) -> list[dict[str, Any]]:
    """The first trials of a new study: each GPU kind and TP filling the whole budget with colocated
    replicas, and (with P/D) the smallest prefill TP beside the largest decode TP, with a quarter or half
    of the budget decoding. Sampling then starts from the layouts a person would try first."""
    eng = scenario.engine
    common = {"router": space.routers[0], "policy": space.policies[0],
              "max_num_batched_tokens": _nearest(space.max_num_batched_tokens, eng.max_num_batched_tokens),
              "max_num_seqs": _nearest(space.max_num_seqs, eng.max_num_seqs)}
    mode = {"mode": "colocated"} if space.disaggregated else {}
    params = [{"gpu": gpu, **mode, "tp": tp, "replicas": space.max_gpus // tp, **common}
              for gpu in space.gpus for tp in space.tps if tp <= space.max_gpus]
    if space.disaggregated:
        tp_prefill, tp_decode = min(space.tps), max(space.tps)
        for gpu in space.gpus:
            for share in (0.25, 0.5):
                decode = max(1, round(share * space.max_gpus / tp_decode))
                prefill = (space.max_gpus - decode * tp_decode) // tp_prefill
                if prefill >= 1:
                    params.append({"gpu": gpu, "mode": "disaggregated", "router": common["router"],
                                   "policy": common["policy"], "prefill_tp": tp_prefill, "decode_tp": tp_decode,
                                   "prefill_replicas": prefill, "decode_replicas": decode,
                                   "max_num_seqs": common["max_num_seqs"],
                                   "prefill_max_num_seqs": max(space.prefill_max_num_seqs)})
    return params


def _nearest(choices: Sequence[int], value: int) -> int:
    return min(choices, key=lambda c: (abs(c - value), c))


def evaluate(job: tuple[Scenario, SloTarget, dict[str, Any], int, int, float]) -> TrialResult:
    """Judge one deployment (runs in a worker: everything it needs comes in `job`)."""
    scenario, target, overrides, gpus, number, tolerance = job
    started = time.perf_counter()
    result = TrialResult(number, overrides, gpus, describe(overrides))
    try:
        candidate = validate_scenario(apply_overrides(scenario.model_dump(mode="json"), overrides), "search")
        capacity = find_capacity(candidate, target, tolerance=tolerance)
        _fill(result, capacity, candidate)
    except KairosError as e:
        result.error = str(e)
    result.wall_s = time.perf_counter() - started
    return result


def _fill(result: TrialResult, capacity: Capacity, scenario: Scenario) -> None:
    best = capacity.best
    if best is None:
        result.error = "meets the SLO at no rate tried"
        return
    result.capacity_rps = best.offered_rps
    result.capacity_knob = best.knob
    result.tokens_per_gpu = best.offered_output_tps / result.gpus
    result.tpot_mean_ms = best.tpot_mean_ms
    result.tokens_per_user = 1e3 / best.tpot_mean_ms if best.tpot_mean_ms else 0.0


def search(scenario: Scenario, target: SloTarget, space: SearchSpace, *, trials: int,
           objectives: Sequence[str] = OBJECTIVES, storage: str | None = None, study_name: str = "kairos-plan",
           seed: int = 0, tolerance: float = 0.05, executor: TrialExecutor,
           on_trial: Callable[[TrialResult], None] | None = None,
           judge: Callable[[tuple], TrialResult] | None = None) -> SearchResult:
    """Judge `trials` more deployments in the study (resumed from `storage` when it has some).

    `judge` turns one job (scenario, target, overrides, GPUs, trial number, tolerance) into its
    TrialResult; by default `evaluate`, a capacity search by simulation."""
    optuna = _optuna()
    unknown = sorted(set(objectives) - set(OBJECTIVES))
    if unknown or not objectives:
        raise KairosError(f"unknown objective {', '.join(unknown) or '(none)'}: choose from {', '.join(OBJECTIVES)}")
    sampler = (optuna.samplers.NSGAIISampler(seed=seed) if len(objectives) > 1
               else optuna.samplers.TPESampler(seed=seed))
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True, sampler=sampler,
                                directions=["maximize"] * len(objectives))
    if not study.trials:
        for params in anchors(scenario, space):
            study.enqueue_trial(params)
    seen: dict[str, TrialResult] = {}
    for old in study.trials:  # a resumed study: its finished trials count and are not run again
        if old.state == optuna.trial.TrialState.COMPLETE and "result" in old.user_attrs:
            done = TrialResult(**json.loads(old.user_attrs["result"]))
            seen[_key(done.overrides)] = done
    result = SearchResult(list(seen.values()))
    # `trials` new deployments; a repeat of one judged before is told its result at no cost. A space
    # smaller than that ends the search once Optuna keeps proposing what it has seen.
    remaining, asks_left = trials, 20 * trials
    while remaining > 0 and asks_left > 0:
        batch = []
        for _ in range(min(remaining, executor.width)):
            trial = study.ask()
            overrides, gpus = draw(trial, space)
            batch.append((trial, overrides, gpus))
        asks_left -= len(batch)
        fresh = {_key(o): (t, o, g) for t, o, g in batch if _key(o) not in seen}
        jobs = [(scenario, target, o, g, t.number, tolerance) for t, o, g in fresh.values()]
        for key, done in zip(fresh, executor.map(judge or evaluate, jobs)):
            seen[key] = done
            result.trials.append(done)
            if on_trial is not None:
                on_trial(done)
        remaining -= len(fresh)
        for trial, overrides, _ in batch:
            done = seen[_key(overrides)]
            if done.error is not None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                trial.set_user_attr("result", json.dumps(done.to_json()))
                study.tell(trial, [getattr(done, name) for name in objectives])
    _mark_pareto(result.trials, objectives)
    result.trials.sort(key=lambda t: (t.error is not None, -t.tokens_per_gpu, -t.tokens_per_user, t.number))
    return result


def describe(overrides: dict[str, Any]) -> str:
    """A trial's deployment in words: "h200 4 x tp4, batch 2048, seqs 128, round_robin, fcfs"."""
    pools = overrides.get("cluster.pools")
    if pools is not None:
        p, d = pools["prefill"], pools["decode"]
        layout = (f"{p['replicas']}P(tp{p['tp']}, seqs {p['engine']['max_num_seqs']})"
                  f"+{d['replicas']}D(tp{d['tp']}, seqs {d['engine']['max_num_seqs']})")
    else:
        layout = (f"{overrides['cluster.replicas']} x tp{overrides['hardware.tp']}, "
                  f"batch {overrides['engine.max_num_batched_tokens']}, seqs {overrides['engine.max_num_seqs']}")
    return f"{overrides['hardware.gpu']} {layout}, {overrides['cluster.router']}, {overrides['engine.policy']}"


def _mark_pareto(trials: list[TrialResult], objectives: Sequence[str]) -> None:
    """Flag the trials no other trial beats on every objective."""
    ok = [t for t in trials if t.error is None]
    for t in ok:
        values = [getattr(t, o) for o in objectives]
        t.pareto = not any(all(getattr(u, o) >= v for o, v in zip(objectives, values))
                           and any(getattr(u, o) > v for o, v in zip(objectives, values)) for u in ok)


def _key(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise KairosError("kairos plan --search needs Optuna: pip install 'kairos[plan]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
