"""Model architectures (dense and MoE) from Hugging Face configs, and a bundled catalog."""

from kairos.models.arch import ModelArch
from kairos.models.catalog import list_models, load_model

__all__ = ["ModelArch", "list_models", "load_model"]
