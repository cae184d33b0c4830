"""Fetching a model's config.json from the Hugging Face Hub (optional extra `hub`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kairos.errors import KairosError

# An "org/name" repository id, as opposed to a file path.
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

WAY_OUT = "download it and pass its path, --model path/to/config.json"

# huggingface_hub's error classes (matched by name, most specific first) and what they mean here.
_REASONS = (
    ("LocalEntryNotFoundError", "offline, and not in the local Hugging Face cache"),
    ("GatedRepoError", "gated repository: accept its license on the Hub and log in"),
    ("RepositoryNotFoundError", "no such repository, or it is private"),
    ("RevisionNotFoundError", "no such revision"),
    ("EntryNotFoundError", "the repository has no config.json"),
    ("HFValidationError", "not a valid repository id"),
)


def looks_like_repo_id(name: str) -> bool:
    return REPO_ID.fullmatch(name) is not None


def fetch_config(repo_id: str) -> Path:
    """Download only `repo_id`'s config.json (huggingface_hub caches it) and return its local path."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise KairosError(
            f"unknown model '{repo_id}': to fetch its config.json from the Hugging Face Hub "
            f"`pip install huggingface_hub` (or 'kairos[hub]'), or {WAY_OUT}"
        ) from None
    try:
        with _quiet("huggingface_hub"):
            return Path(hf_hub_download(repo_id, "config.json"))
    # Any failure (offline, unknown or gated repository, HTTP or cache errors) has the same way out.
    except Exception as err:
        raise KairosError(
            f"cannot fetch config.json of {repo_id} from the Hugging Face Hub ({_short_reason(err)}): {WAY_OUT}"
        ) from err


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hold back a library's warnings (huggingface_hub logs each retry): the error says it in one line."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _short_reason(err: Exception) -> str:
    names = {cls.__name__ for cls in type(err).__mro__}
    for name, reason in _REASONS:
        if name in names:
            return reason
    first_line = (str(err).strip().splitlines() or [""])[0]
    detail = first_line if len(first_line) <= 80 else first_line[:77] + "..."
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__
