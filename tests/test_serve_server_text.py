"""The server's text pieces: incremental detokenization, stop strings, chat templates."""

from __future__ import annotations

import json
import random

import pytest

from kairos.serve.openai_chat import JinjaChatTemplate, SimpleChatTemplate, load_chat_template
from kairos.serve.openai_detokenize import IncrementalDetokenizer
from kairos.serve.openai_stop import StopStringMatcher
from kairos.serve.tokenizer import ByteTokenizer

TOKENIZER = ByteTokenizer()


def deltas(ids: list[int]) -> list[str]:
    detok = IncrementalDetokenizer(TOKENIZER)
    out = [detok.add(i) for i in ids]
    out[-1] += detok.flush()
    return out


def test_multibyte_characters_are_never_split():
    text = "héllo wörld: 3€, 日本語 and 🙂!"
    out = deltas(TOKENIZER.encode(text, add_bos=False))
    assert "".join(out) == text
    assert all("\ufffd" not in d for d in out)
    # Every byte that ends a character emits it whole; the bytes before it emit nothing.
    assert [d for d in out if d] == list(text)


@pytest.mark.parametrize("seed", range(20))
def test_deltas_concatenate_to_the_full_decode(seed):
    """Random bytes (invalid UTF-8 included) and special ids: the stream says what decode says."""
    rng = random.Random(seed)
    ids = [rng.choice([rng.randrange(512), rng.randrange(128), 0xE2, 0x82, 0xAC, 0xF0]) for _ in range(60)]
    assert "".join(deltas(ids)) == TOKENIZER.decode(ids)


def test_stop_string_across_deltas_is_cut_and_not_emitted():
    matcher = StopStringMatcher(["STOP", "##"])
    emitted, hit = [], False
    for piece in ["hello S", "T", "O", "P and more"]:
        text, hit = matcher.push(piece)
        emitted.append(text)
        if hit:
            break
    assert hit and "".join(emitted) == "hello "


def test_held_back_text_is_released_when_no_stop_comes():
    matcher = StopStringMatcher(["STOP"])
    out = [matcher.push(p)[0] for p in ["abcST", "Oxyz"]]
    assert "".join(out) + matcher.flush() == "abcSTOxyz"
    no_stops = StopStringMatcher([])
    assert no_stops.push("anything") == ("anything", False)


def test_simple_chat_template():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert SimpleChatTemplate().render(messages) == "<|system|>\nS\n<|user|>\nU\n<|assistant|>\n"
    assert isinstance(load_chat_template(None), SimpleChatTemplate)


def test_model_directory_chat_template(tmp_path):
    pytest.importorskip("jinja2")
    template = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}"
                "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": template, "bos_token": "<s>", "eos_token": {"content": "</s>"}}))
    loaded = load_chat_template(tmp_path)
    assert isinstance(loaded, JinjaChatTemplate) and not loaded.add_bos
    assert loaded.render([{"role": "user", "content": "hi"}]) == "<s>[user]hi</s>[assistant]"
    assert isinstance(load_chat_template(tmp_path / "missing"), SimpleChatTemplate)
