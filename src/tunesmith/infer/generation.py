"""One request inside the engine: its tokens so far, stop handling, and the stream of deltas."""

from __future__ import annotations

import asyncio
import itertools
import queue
from dataclasses import dataclass, field

import torch

from tunesmith.infer.sampling import SamplingParams, TokenLogprob

_ids = itertools.count()


@dataclass
class Delta:
    """New text for one request; the last delta carries `finish_reason`."""

    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


SEED_MODULUS = 2**64  # torch generators take seeds in [-2**63, 2**64): any int is reduced into it


class Generation:
    """State of one request. Only the scheduler thread mutates it; readers use `deltas`.

    With `loop`, `deltas` is an asyncio.Queue fed on that event loop (a coroutine awaits the next
    delta without holding a thread); without, a queue.Queue for readers on plain threads.
    """

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        tokenizer,
        stop_ids: set[int],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.id = next(_ids)
        self.prompt_ids = prompt_ids
        self.params = params
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.generated: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.text = ""
        # Incremental decoding: `text` is decode(generated[:_read]); only the window from _prefix
        # is decoded again per token (the whole answer each token was quadratic in its length).
        self._prefix = 0
        self._read = 0
        self.sent_chars = 0
        self.sent_tokens = 0
        self.finish_reason: str | None = None
        self.loop = loop
        self.deltas: queue.Queue[Delta | BaseException] | asyncio.Queue[Delta | BaseException] = (
            asyncio.Queue() if loop is not None else queue.Queue()
        )
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed % SEED_MODULUS)
        self.guide = None
        if params.guide == "json":
            from tunesmith.infer.json_guide import JsonGuide

            self.guide = JsonGuide(tokenizer)
        elif params.guide == "tool_call":
            from tunesmith.infer.json_guide import ToolCallGuide

            self.guide = ToolCallGuide(tokenizer, params.tools, params.tool_named)
        self.cancelled = False

    def cancel(self) -> None:
        """The client went away: the scheduler drops the row at its next step."""
        self.cancelled = True

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.cancelled

    def accept(self, token: int, logprob: TokenLogprob | None) -> None:
        """Take one generated token; finish on an end-of-turn token, a stop string or the limit."""
        if token in self.stop_ids:
            self.finish("stop")
            return
        if self.guide is not None:
            self.guide.advance(token)
        self.generated.append(token)
        if logprob is not None:
            self.logprobs.append(logprob)
        before = len(self.text)
        self._decode_new()
        for stop in self.params.stop:
            cut = self.text.find(stop, max(0, before - len(stop) + 1))  # only what is new can match
            if cut >= 0:
                self.text = self.text[:cut]
                self._prefix = self._read = len(self.generated)  # nothing after the stop string
                self.finish("stop")
                return
        if self.guide is not None and self.guide.done:
            self.finish("stop")  # the guided text is complete: nothing may follow it
            return
        if len(self.generated) >= self.params.max_tokens:
            self.finish("length")
            return
        self._send()

    def _decode_new(self, final: bool = False) -> None:
        """Append the text the newest tokens add, decoding a short window rather than the whole
        answer. The window starts a few tokens back (at the previous step's offset), so a
        tokenizer that decodes a token differently at the start of a text (SentencePiece's
        leading space) does so on both sides of the difference. Tokens that end in half a UTF-8
        character wait for the rest, unless the answer is over."""
        decode = self.tokenizer.decode
        known = decode(self.generated[self._prefix : self._read], skip_special_tokens=True)
        window = decode(self.generated[self._prefix :], skip_special_tokens=True)
        if final or (len(window) > len(known) and not window.endswith("\ufffd")):
            self.text += window[len(known) :]
            self._prefix, self._read = self._read, len(self.generated)

    def finish(self, reason: str) -> None:
        self._decode_new(final=True)  # what waited for the rest of a character
        self.finish_reason = reason
        self._send()

    def fail(self, error: BaseException) -> None:
        self.finish_reason = "error"
        self._put(error)

    def _put(self, item: Delta | BaseException) -> None:
        if self.loop is None:
            self.deltas.put_nowait(item)
            return
        try:
            self.loop.call_soon_threadsafe(self.deltas.put_nowait, item)
        except RuntimeError:  # the event loop is closed (server shut down): nobody is reading
            self.cancel()

    def _send(self) -> None:
        """Emit the text that can no longer change: never half a UTF-8 character, never the
        beginning of what may turn out to be a stop string."""
        ready = len(self.text)
        if not self.done:
            if self.text.endswith("\ufffd"):
                return
            for stop in self.params.stop:
                for k in range(min(len(stop) - 1, ready), 0, -1):
                    if self.text.endswith(stop[:k]):
                        ready = min(ready, len(self.text) - k)
                        break
        if ready <= self.sent_chars and not self.done:
            return
        delta = Delta(
            text=self.text[self.sent_chars : ready],
            token_ids=self.generated[self.sent_tokens :],
            logprobs=self.logprobs[self.sent_tokens :],
            finish_reason=self.finish_reason,
        )
        self.sent_chars = max(self.sent_chars, ready)
        self.sent_tokens = len(self.generated)
        self._put(delta)

    def completion(self) -> Completion:
        assert self.finish_reason is not None
        return Completion(
            text=self.text,
            token_ids=self.generated,
            finish_reason=self.finish_reason,
            prompt_tokens=len(self.prompt_ids),
            logprobs=self.logprobs,
        )
