"""Kairos policies inside other engines.

`kairos.integrations.vllm` is vLLM's `--scheduler-cls` plug-in (it imports only where vLLM is
installed); `kairos.integrations.vllm_queue` is its engine-free half: vLLM's waiting-queue
interface over a Kairos `QueuePolicy`. Nothing else in kairos imports this package.
"""
