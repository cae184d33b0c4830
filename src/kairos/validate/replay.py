"""Rebuild a measured run as a simulation: same requests, same arrivals, same engine settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kairos.bench.run_format import MeasuredRun
from kairos.calibration.machine_speed import AtMachineSpeed, at_speed, speed_factor, speed_timeline
from kairos.calibration.model import CalibratedModel
from kairos.errors import KairosError
from kairos.hardware import gpu_name_for_device
from kairos.metrics import RequestRecord
from kairos.scenario.load import validate_scenario
from kairos.scenario.run import build_simulation, resolve_deployment
from kairos.scenario.schema import Scenario
from kairos.scenario.step_models import is_calibrated, load_calibrated
from kairos.validate.compare import compare_counters, compare_runs
from kairos.validate.steps import step_time_errors
from kairos.workload.spec import RequestSpec


def replay_specs(run: MeasuredRun) -> list[RequestSpec]:
    """The run's completed requests, arriving when the engine queued them, with the
    prompt spans they shared (where the run records them: `kairos bench` does)."""
    return [RequestSpec(r.request_id, r.arrival_s, r.input_tokens, r.output_tokens,
                        shared=run.shared.get(r.request_id, ()))
            for r in run.completed if r.output_tokens > 0]


def replay_scenario(run: MeasuredRun, *, gpu: str | None = None, model: str | None = None,
                    perf: str = "auto") -> Scenario:
    """A scenario with the engine settings meta.json records; `gpu`/`model` override it.

    A closed-loop run (`kairos bench --concurrency`, meta.json's `max_concurrency`)
    is replayed behind the same gate: each request arrives when it was sent, and
    waits for a slot where the simulated requests before it have not ended yet.
    """
    meta = run.meta
    engine_kwargs: dict[str, Any] = meta.get("engine_kwargs") or {}
    kv: dict[str, Any] = meta.get("kv_cache") or {}
    model_name = model or meta.get("model") or engine_kwargs.get("model")
    if not model_name:
        raise KairosError(f"{run.path}/meta.json names no model: pass --model")
    gpu_name = gpu
    # A calibrated profile carries its own device; every other model needs a catalog GPU.
    if gpu_name is None and not is_calibrated(perf):
        device = (meta.get("hardware") or {}).get("device_name")
        gpu_name = gpu_name_for_device(device) if device else None
        if gpu_name is None:
            raise KairosError(f"{run.path}/meta.json: cannot tell the GPU from device name "
                              f"{device!r}: pass --gpu (see `kairos gpus`)")
    engine: dict[str, Any] = {}
    for key in ("max_num_seqs", "max_num_batched_tokens"):
        if engine_kwargs.get(key) is not None:
            engine[key] = engine_kwargs[key]
    for key in ("block_size", "enable_prefix_caching", "gpu_memory_utilization", "num_gpu_blocks"):
        if kv.get(key) is not None:
            engine[key] = kv[key]
    if engine.get("num_gpu_blocks") and _counts_null_block(meta):
        engine["num_gpu_blocks"] -= 1
    data: dict[str, Any] = {
        "model": {"name": model_name, "max_model_len": engine_kwargs.get("max_model_len")},
        "hardware": {"tp": engine_kwargs.get("tensor_parallel_size") or 1,
                     **({"gpu": gpu_name} if gpu_name else {})},
        "engine": engine,
        "perf": {"model": perf},
    }
    concurrency = (meta.get("kairos_bench") or {}).get("max_concurrency")
    if concurrency is not None:
        data["workload"] = {"concurrency": concurrency}
    return validate_scenario(data, f"{run.path}/meta.json")


def _counts_null_block(meta: dict[str, Any]) -> bool:
    """Whether the run's num_gpu_blocks includes vLLM's null block, which never holds KV.

    vLLM's own records say so by their vllm_version; `kairos bench` records whether
    the server was `kairos serve` (whose count is all usable) and takes any other
    server to count as vLLM does.
    """
    bench = meta.get("kairos_bench")
    if bench is not None and "kairos_engine" in bench:
        return not bench["kairos_engine"]
    return "vllm_version" in meta


def validate_run(run: MeasuredRun, scenario: Scenario, progress: Callable[[int, int], None] | None = None,
                 machine_speed: bool = True) -> dict:
    """Simulate the run's requests under `scenario` and compare with what was measured.

    Where the run holds the engine's steps, `engine_steps` says how well the
    step-time model predicts them. Where both the run's steps and a calibrated
    profile carry reference-step readings (kairos.calibration.machine_speed),
    `machine_speed` says how much slower than at calibration the machine ran,
    and with `machine_speed` the profile is scaled to that speed first: step by
    step where the steps carry their start times, else by the run's mean factor.
    """
    calibrated = load_calibrated(scenario.perf.model)
    speed = None
    timeline = None
    if calibrated is not None:
        speed = speed_factor(calibrated.profile, run.steps)
        if speed is not None and machine_speed:
            timeline = speed_timeline(calibrated.profile, run.steps, run.zero_s)
            if timeline is not None:
                speed["timeline"] = {"readings": len(timeline.factors), "min": float(timeline.factors.min()),
                                     "max": float(timeline.factors.max())}
            else:
                calibrated = CalibratedModel(at_speed(calibrated.profile, speed["factor"]))
    deployment = resolve_deployment(scenario, calibrated)
    if timeline is not None and calibrated is not None:
        if deployment.lockstep:
            raise KairosError("replaying a measured run's machine speed needs one engine per replica, not dp ranks")
        at_run_speed = AtMachineSpeed(calibrated, timeline)
        deployment = replace(deployment, perf=replace(deployment.perf, model=at_run_speed))
    sim = build_simulation(scenario, deployment, replay_specs(run), progress=progress)
    outcome = sim.run()
    simulated: list[RequestRecord] = outcome.records
    result = compare_runs(run, simulated)
    counters = compare_counters(run.meta, outcome, sim.request_latency)
    if counters:
        result["server_counters"] = counters
    # How loaded the run was, as the twin sees it: its engines' busy share of the run.
    if outcome.end_s > 0 and outcome.replicas:
        busy = sum(rep["busy_s"] for rep in outcome.replicas) / len(outcome.replicas)
        result["simulated_busy_share"] = round(busy / outcome.end_s, 4)
    result["gpu"] = deployment.device
    result["perf"] = deployment.perf.used
    result["model"] = deployment.model.name
    result["kv_blocks"] = deployment.kv_blocks
    if run.steps:
        result["engine_steps"] = step_time_errors(run.steps, deployment.perf.model, run.zero_s)
    if speed is not None:
        result["machine_speed"] = {**speed, "applied": machine_speed}
    return result
