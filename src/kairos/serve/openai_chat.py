"""Chat prompts: messages rendered to the text the model is given.

A model directory whose tokenizer_config.json (or chat_template.jinja) has a
`chat_template` is rendered with it, as transformers' apply_chat_template does
(with add_generation_prompt), when jinja2 is installed. Otherwise, and for the
random-init presets with their byte tokenizer, the simple template is used:

    <|system|>\\n{content}\\n<|user|>\\n{content}\\n ... <|assistant|>\\n

one `<|role|>` line then the content line per message, ending with the
assistant's header, and BOS in front.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger("kairos.serve")


class ChatTemplate(Protocol):
    """Renders messages ({"role", "content"} dicts) to a prompt; `add_bos` says whether to encode with BOS."""

    add_bos: bool

    def render(self, messages: list[dict[str, str]]) -> str: ...


class SimpleChatTemplate:
    """The built-in template (see the module docstring); the tokenizer adds BOS."""

    add_bos = True

    def render(self, messages: list[dict[str, str]]) -> str:
        parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
        return "".join(parts) + "<|assistant|>\n"


@dataclass(frozen=True)
class JinjaChatTemplate:
    """A Hugging Face chat template; it writes its own BOS (as bos_token), so encoding adds none."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    add_bos = False

    def render(self, messages: list[dict[str, str]]) -> str:
        import jinja2

        try:
            return _compile(self.source).render(messages=messages, add_generation_prompt=True,
                                                bos_token=self.bos_token, eos_token=self.eos_token)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template failed: {exc}") from None


class ChatTemplateError(ValueError):
    """The model's template refused the messages (its raise_exception, or a rendering error)."""


@lru_cache(maxsize=4)
def _compile(source: str) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(message)

    # The environment transformers uses: templates are written against these settings and helpers.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template does not compile: {exc}") from None


def load_chat_template(model_dir: Path | None) -> ChatTemplate:
    """The chat template of a HF model directory if it has one and jinja2 is available, else the simple one."""
    if model_dir is None:
        return SimpleChatTemplate()
    config_file = model_dir / "tokenizer_config.json"
    config: dict[str, Any] = json.loads(config_file.read_text()) if config_file.exists() else {}
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default")
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.exists():
        source = jinja_file.read_text()
    if not isinstance(source, str):
        return SimpleChatTemplate()
    if importlib.util.find_spec("jinja2") is None:
        logger.warning("%s has a chat template but jinja2 is not installed: using the simple template", model_dir)
        return SimpleChatTemplate()
    template = JinjaChatTemplate(source, _token_text(config.get("bos_token")), _token_text(config.get("eos_token")))
    _compile(source)  # fail at startup, not on the first chat request
    return template


def _token_text(token: Any) -> str:
    """tokenizer_config.json gives special tokens as a string or as {"content": ...}."""
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return token if isinstance(token, str) else ""
