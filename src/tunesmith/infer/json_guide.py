"""Decoding that can only produce JSON: a character-level JSON prefix checker over token texts.

For `response_format: json_object` every generated token must keep the text a prefix of a valid
JSON object; the sequence ends as soon as the object is complete. Candidates are tried in order
of probability, so the cost is usually one check per step.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

_COMPLETE_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
_WHITESPACE = " \t\n\r"
# Whitespace is valid JSON between any two tokens, so an unsure model could emit it forever; no
# leading whitespace, and runs long enough for pretty-printing only.
MAX_WHITESPACE_RUN = 32


class JsonPrefix:
    """The state of a partial JSON text. `feed` returns False at the first impossible char."""

    def __init__(self, object_only: bool = True) -> None:
        self.object_only = object_only
        self.stack: list[str] = []  # "obj" / "arr"
        self.mode = "value"
        self.key = False  # the open string is an object key
        self.pending = ""  # rest of a literal, or hex digits left in a \u escape
        self.number = ""
        self.done = False
        self.whitespace = 0  # length of the current run of whitespace between tokens

    def copy(self) -> JsonPrefix:
        other = JsonPrefix.__new__(JsonPrefix)
        other.__dict__ = {**self.__dict__, "stack": list(self.stack)}
        return other

    def feed(self, text: str) -> bool:
        return all(self._step(ch) for ch in text)

    def _end_value(self) -> None:
        if self.stack:
            self.mode = "after"
        else:
            self.mode, self.done = "done", True

    def _step(self, ch: str) -> bool:
        mode = self.mode
        if mode == "string":
            if ch == '"':
                self.mode = "colon" if self.key else "after"
                if not self.key:
                    self._end_value()
            elif ch == "\\":
                self.mode = "escape"
            return ch == '"' or ch == "\\" or ord(ch) >= 0x20
        if mode == "escape":
            if ch == "u":
                self.mode, self.pending = "unicode", "xxxx"
                return True
            self.mode = "string"
            return ch in '"\\/bfnrt'
        if mode == "unicode":
            self.pending = self.pending[1:]
            if not self.pending:
                self.mode = "string"
            return ch in string.hexdigits
        if mode == "literal":
            if ch != self.pending[0]:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self._end_value()
            return True
        if mode == "number":
            candidate = self.number + ch
            if _COMPLETE_NUMBER.fullmatch(candidate) or _COMPLETE_NUMBER.fullmatch(candidate + "0"):
                self.number = candidate
                return True
            if not _COMPLETE_NUMBER.fullmatch(self.number):
                return False
            self._end_value()
            return self._step(ch)
        if ch in _WHITESPACE:
            self.whitespace += 1
            started = bool(self.stack) or self.done
            return started and self.whitespace <= MAX_WHITESPACE_RUN
        self.whitespace = 0
        return self._structural(ch)

    def _structural(self, ch: str) -> bool:
        mode = self.mode
        if mode in ("value", "value_or_close"):
            if mode == "value_or_close" and ch == "]":
                self.stack.pop()
                self._end_value()
                return True
            if not self.stack and self.object_only and ch != "{":
                return False
            return self._open_value(ch)
        if mode in ("key", "key_or_close"):
            if mode == "key_or_close" and ch == "}":
                self.stack.pop()
                self._end_value()
                return True
            if ch == '"':
                self.mode, self.key = "string", True
                return True
            return False
        if mode == "colon":
            if ch == ":":
                self.mode, self.key = "value", False
                return True
            return False
        if mode == "after":
            closer = "}" if self.stack[-1] == "obj" else "]"
            if ch == ",":
                self.mode = "key" if self.stack[-1] == "obj" else "value"
                return True
            if ch == closer:
                self.stack.pop()
                self._end_value()
                return True
        return False

    def _open_value(self, ch: str) -> bool:
        if ch == "{":
            self.stack.append("obj")
            self.mode = "key_or_close"
        elif ch == "[":
            self.stack.append("arr")
            self.mode = "value_or_close"
        elif ch == '"':
            self.mode, self.key = "string", False
        elif ch in "-0123456789":
            self.mode, self.number = "number", ch
        elif ch in _LITERALS:
            self.mode, self.pending = "literal", _LITERALS[ch]
        else:
            return False
        return True


@lru_cache(maxsize=4)
def token_texts(tokenizer) -> tuple[str, ...]:
    """The text each token id adds when it follows other text (leading spaces kept)."""
    anchor = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("a"))[:1]
    base = tokenizer.decode(anchor)
    texts = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([*anchor, token_id], skip_special_tokens=True)
        texts.append(text[len(base) :] if text.startswith(base) else "")
    return tuple(texts)


class JsonGuide:
    """Per-sequence: which tokens keep the output a JSON object prefix."""

    def __init__(self, tokenizer) -> None:
        self.texts = token_texts(tokenizer)
        self.state = JsonPrefix(object_only=True)

    @property
    def done(self) -> bool:
        return self.state.done

    def allows(self, token_id: int) -> bool:
        text = self.texts[token_id] if token_id < len(self.texts) else ""
        # Empty texts (special tokens) would let decoding loop without progress.
        return bool(text) and "\ufffd" not in text and self.state.copy().feed(text)

    def advance(self, token_id: int) -> None:
        self.state.feed(self.texts[token_id])
