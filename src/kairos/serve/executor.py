"""TorchExecutor: runs each scheduled engine step as one forward pass over a paged KV pool."""

from __future__ import annotations

import torch

from kairos.engine.kv_cache import KVCacheManager
from kairos.engine.scheduler import SchedulerOutput
from kairos.serve.attention import build_attention_metadata, min_split_slots
from kairos.serve.model import CausalLM
from kairos.serve.native.build import NativeKernels
from kairos.serve.native.varlen import build_varlen_metadata
from kairos.serve.sampler import Sampler


class TorchExecutor:
    """The engine's `Executor` for real models: computes the scheduled tokens and samples completions.

    Every scheduled request, prefill chunk or decode, contributes tokens
    [num_computed, num_computed + n) to one flattened batch; requests whose step
    reaches their last token get a next token from the sampler. With `native`
    kernels attention is varlen over a pool in their layout (allocate_native_pool),
    else padded SDPA over a standard pool (allocate_kv_pool).
    """

    def __init__(self, model: CausalLM, kv: KVCacheManager, kv_pool: torch.Tensor, sampler: Sampler,
                 native: NativeKernels | None = None) -> None:
        self.model = model
        self.native = native
        self.kv = kv
        self.kv_pool = kv_pool
        self.sampler = sampler
        self.device = kv_pool.device
        self.queries_per_kv = model.config.num_heads // model.config.num_kv_heads
        # Context slots an attention batch split must save (kairos.perf.attention_groups).
        self.min_split_slots = min_split_slots(self.device, model.config.num_kv_heads, model.config.head_dim,
                                                kv_pool.dtype)

    def execute(self, out: SchedulerOutput) -> dict[int, int]:
        ids: list[int] = []
        starts: list[int] = []
        lens: list[int] = []
        tables: list[list[int]] = []
        sample_rows: list[int] = []
        sample_uids: list[int] = []
        for req, n in out.scheduled:
            if req.token_ids is None:
                raise ValueError(f"request {req.request_id} has no token ids: real execution needs "
                                 "RequestSpec.prompt_token_ids")
            start = req.num_computed
            ids.extend(req.token_ids[start:start + n])
            starts.append(start)
            lens.append(n)
            tables.append(self.kv.block_table(req))
            if start + n == req.num_tokens:
                sample_rows.append(len(ids) - 1)
                sample_uids.append(req.uid)
        if self.native is not None:
            meta = build_varlen_metadata(starts, lens, tables, self.kv.block_size, self.native)
        else:
            meta = build_attention_metadata(starts, lens, tables, self.kv.block_size, self.queries_per_kv,
                                            self.device, self.min_split_slots)
        with torch.inference_mode():
            input_ids = torch.tensor(ids, dtype=torch.long).to(self.device)
            hidden = self.model(input_ids, self.kv_pool, meta)
            if not sample_uids:
                return {}
            rows = torch.tensor(sample_rows, dtype=torch.long).to(self.device)
            tokens = self.sampler.sample(self.model.logits(hidden.index_select(0, rows)), sample_uids)
        return dict(zip(sample_uids, tokens))
