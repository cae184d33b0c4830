"""Launch commands for a planned deployment: what to run to serve it with vLLM."""

from __future__ import annotations

from kairos.models.catalog import hf_id_for
from kairos.scenario.schema import Scenario


def vllm_serve_command(scenario: Scenario) -> str:
    """One replica's `vllm serve` line with the engine settings the plan simulated."""
    eng = scenario.engine
    model = hf_id_for(scenario.model.name) or scenario.model.name
    flags = [f"--tensor-parallel-size {scenario.hardware.tp}"]
    if scenario.hardware.dp > 1:
        flags.append(f"--data-parallel-size {scenario.hardware.dp}")
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
        flags.append("--scheduler-cls kairos.integrations.vllm.KairosScheduler --additional-config "
                     f"'{{\"kairos\": {{\"policy\": \"{eng.policy}\"}}}}'")
    return f"vllm serve {model} " + " ".join(flags)


def launch_plan(scenario: Scenario) -> list[str]:
    """The commands to run: each replica's server, and how requests reach them."""
    replicas = scenario.cluster.replicas
    lines = [vllm_serve_command(scenario) + (f"   # x {replicas} replicas, {scenario.hardware.tp} GPU(s) each"
                                             if replicas > 1 else "")]
    if replicas > 1:
        lines.append(f"# route with {scenario.cluster.router} across the {replicas} replicas (e.g. llm-d or a proxy)")
    return lines
