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

    def __init__(self, object_only: bool = True, keys: tuple[str, ...] | None = None) -> None:
        self.object_only = object_only
        # With `keys`, the top-level object may only use these keys, each at most once (a tool's
        # declared parameters): small models otherwise copy the schema itself as arguments.
        self.keys = keys
        self.used: tuple[str, ...] = ()
        self.key_text = ""
        self.stack: list[str] = []  # "obj" / "arr"
        self.mode = "value"
        self.key = False  # the open string is an object key
        self.pending = ""  # rest of a literal, or hex digits left in a \u escape
        self.number = ""
        self.done = False
        self.whitespace = 0  # length of the current run of whitespace between tokens

    def copy(self) -> JsonPrefix:
        other = JsonPrefix.__new__(JsonPrefix)
        other.__dict__ = {**self.__dict__, "stack": list(self.stack)}  # tuples are shared safely
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
            if self._checks_keys():
                return self._key_char(ch)
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

    def _checks_keys(self) -> bool:
        return self.keys is not None and self.key and len(self.stack) == 1

    def _free_keys(self) -> list[str]:
        return [k for k in self.keys or () if k not in self.used]

    def _key_char(self, ch: str) -> bool:
        """A top-level key, checked against the allowed keys (plain characters only)."""
        if ch == '"':
            if self.key_text not in self._free_keys():
                return False
            self.used += (self.key_text,)
            self.key_text, self.mode = "", "colon"
            return True
        if ch == "\\" or not any(k.startswith(self.key_text + ch) for k in self._free_keys()):
            return False
        self.key_text += ch
        return True

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
            if mode == "key_or_close" and len(self.stack) == 1 and self.keys == ():
                return ch == "}" and self._close_object()
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
            if (
                ch == ","
                and len(self.stack) == 1
                and self.keys is not None
                and not self._free_keys()
            ):
                return False
            if ch == ",":
                self.mode = "key" if self.stack[-1] == "obj" else "value"
                return True
            if ch == closer:
                self.stack.pop()
                self._end_value()
                return True
        return False

    def _close_object(self) -> bool:
        self.stack.pop()
        self._end_value()
        return True

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


class ToolCallGuide:
    """For tool_choice "required" or a named function: after the forced `<tool_call>{"name": "`,
    the model may only write one of the offered names, then a JSON object of arguments whose keys
    are the function's declared parameters.

    `functions` maps each name to its parameter names (None: any keys). With `named`, the name is
    already in the forced prefix and only the arguments follow.
    """

    def __init__(
        self,
        tokenizer,
        functions: dict[str, tuple[str, ...] | None],
        named: str | None = None,
    ) -> None:
        self.texts = token_texts(tokenizer)
        self.functions = functions
        self.heads = {f'{name}", "arguments": ': name for name in functions}
        self.head: str | None = None if named else ""  # None: the name is settled
        self.state = JsonPrefix(object_only=True, keys=functions.get(named) if named else None)

    @property
    def done(self) -> bool:
        return self.state.done

    def _try(self, text: str) -> tuple[str | None, JsonPrefix] | None:
        head, state = self.head, self.state.copy()
        for ch in text:
            if head is not None:
                head += ch
                if head in self.heads:  # the name is complete: its parameters become the keys
                    state = JsonPrefix(object_only=True, keys=self.functions[self.heads[head]])
                    head = None
                elif not any(h.startswith(head) for h in self.heads):
                    return None
            elif not state.feed(ch):
                return None
        return head, state

    def allows(self, token_id: int) -> bool:
        text = self.texts[token_id] if token_id < len(self.texts) else ""
        return bool(text) and "\ufffd" not in text and self._try(text) is not None

    def advance(self, token_id: int) -> None:
        self.head, self.state = self._try(self.texts[token_id])
