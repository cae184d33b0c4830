"""Model architectures (dense, MoE, MLA) from Hugging Face configs, their precision, and a bundled catalog."""

from kairos.models.arch import ModelArch
from kairos.models.catalog import (
    ResolvedModel,
    aiconfigurator_model_configs,
    catalog_config,
    list_known_hf_ids,
    list_models,
    load_model,
    resolve_model,
)
from kairos.models.kv_bytes import KvShards, kv_bytes, kv_shards
from kairos.models.precision import KV_CACHE_DTYPES, WEIGHTS_DTYPES

__all__ = [
    "KV_CACHE_DTYPES",
    "WEIGHTS_DTYPES",
    "KvShards",
    "ModelArch",
    "ResolvedModel",
    "aiconfigurator_model_configs",
    "catalog_config",
    "kv_bytes",
    "kv_shards",
    "list_known_hf_ids",
    "list_models",
    "load_model",
    "resolve_model",
]
