"""Launch commands for a planned deployment: what to run to serve it with vLLM."""

from __future__ import annotations

import json

from kairos.models.catalog import hf_id_for
from kairos.scenario.run import pool_scenario
from kairos.scenario.schema import EngineSection, Scenario

# vLLM's NIXL connector pulls the prompt's KV from the prefill replica, as the simulator's remote prefill does.
_KV_TRANSFER = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})


def vllm_serve_command(model: str, tp: int, dp: int, eng: EngineSection, extra: tuple[str, ...] = ()) -> str:
    """One replica's `vllm serve` line with the engine settings the plan simulated."""
    flags = [f"--tensor-parallel-size {tp}"]
    if dp > 1:
        flags.append(f"--data-parallel-size {dp}")
    flags += [f"--max-num-seqs {eng.max_num_seqs}", f"--max-num-batched-tokens {eng.max_num_batched_tokens}",
              f"--block-size {eng.block_size}", f"--gpu-memory-utilization {eng.gpu_memory_utilization:g}"]
    if not eng.enable_prefix_caching:
        flags.append("--no-enable-prefix-caching")
    if not eng.enable_chunked_prefill:
        flags.append("--no-enable-chunked-prefill")
    if eng.policy == "priority":
        flags.append("--scheduling-policy priority")
    elif eng.policy != "fcfs":
        # Kairos's own policies run inside vLLM through the plug-in (docs/VLLM_PLUGIN.md).
        config = {"kairos": {"policy": eng.policy, **({"policy_options": eng.policy_options} if eng.policy_options
                                                       else {})}}
        flags.append("--scheduler-cls kairos.integrations.vllm.KairosScheduler"
                     f" --additional-config '{json.dumps(config)}'")
    return " ".join([f"vllm serve {model}", *flags, *extra])


def launch_plan(scenario: Scenario) -> list[str]:
    """The commands to run: each replica's (or each pool's) server, and how requests reach them."""
    model = hf_id_for(scenario.model.name) or scenario.model.name
    hardware, cluster = scenario.hardware, scenario.cluster
    if cluster.pools is None:
        replicas = cluster.replicas or 1
        line = vllm_serve_command(model, hardware.tp, hardware.dp, scenario.engine)
        if replicas == 1:
            return [line]
        return [f"{line}   # x {replicas} replicas, {hardware.tp * hardware.dp} GPU(s) each",
                f"# route with {cluster.router} across the {replicas} replicas (e.g. llm-d or a proxy)"]
    lines = []
    for name in ("prefill", "decode"):
        pool = pool_scenario(scenario, name)
        tp = pool.hardware.tp
        line = vllm_serve_command(model, tp, 1, pool.engine, ("--kv-transfer-config", f"'{_KV_TRANSFER}'"))
        lines.append(f"{line}   # {name}: x {pool.cluster.replicas} replicas on {pool.hardware.gpu}, {tp} GPU(s) each")
    lines.append("# a P/D proxy (llm-d's, or vLLM's disaggregated-serving proxy) sends each request to a decode replica"
                 " and its prefill to a prefill replica")
    return lines
