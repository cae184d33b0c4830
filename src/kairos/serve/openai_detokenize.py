"""Incremental detokenization: the text each new token adds, never splitting a multi-byte character."""

from __future__ import annotations

from kairos.serve.tokenizer import Tokenizer

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of output ids into text deltas whose concatenation is `decode(all ids)`.

    Decoding only a short window (from the last emitted boundary) keeps the cost
    per token constant. A window whose text ends in U+FFFD is a character still
    missing bytes, so its text is held until a later token completes it, or until
    `flush` at the end. Decoding the window together with the tokens before it
    keeps tokenizers that drop a leading space (SentencePiece) from losing it.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # start of the decoding window
        self._read = 0  # end of the text already emitted

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes (may be empty)."""
        self.ids.append(token_id)
        decode = self._tokenizer.decode
        done = decode(self.ids[self._prefix:self._read])
        text = decode(self.ids[self._prefix:])
        if len(text) > len(done) and not text.endswith(REPLACEMENT):
            self._prefix, self._read = self._read, len(self.ids)
            return text[len(done):]
        return ""

    def flush(self) -> str:
        """Text still held at the end (an incomplete character decodes as U+FFFD)."""
        decode = self._tokenizer.decode
        done = decode(self.ids[self._prefix:self._read])
        text = decode(self.ids[self._prefix:])
        self._prefix = self._read = len(self.ids)
        return text[len(done):]
