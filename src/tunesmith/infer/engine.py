"""The engine: loads each base model once, attaches adapters by name, and runs a scheduler that
batches every request of the same base model continuously, on the process's torch thread."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.errors import TunesmithError
from tunesmith.infer import slots
from tunesmith.infer.batch import RunningBatch
from tunesmith.infer.generation import Completion, Delta, Generation
from tunesmith.infer.sampling import SamplingParams
from tunesmith.infer.slots import SlotBatch
from tunesmith.infer.weights import four_bit
from tunesmith.models import threads
from tunesmith.models.spec import ModelSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Loaded:
    """One base model in memory, with the adapters attached to it so far."""

    model: object
    tokenizer: object
    device: str
    stop_ids: set[int]
    adapters: dict[str, str] = field(default_factory=dict)  # adapter folder -> PEFT adapter name
    batch: RunningBatch | None = None
    general: bool = False  # an adapter the slot batch cannot apply: switch to RunningBatch


@dataclass(frozen=True)
class Limits:
    """What a request to one model must fit in."""

    context: int  # prompt plus answer, in tokens
    vocab: int  # token ids in [0, vocab) are ones the model scores and the tokenizer decodes


Run = tuple[list[int], SamplingParams]  # one sequence to generate: prompt token ids, settings


def check_quantize(quantize: str | None) -> None:
    """--quantize's choices, checked before anything loads."""
    if quantize not in (None, "int8", "int4"):
        raise TunesmithError(
            f"--quantize {quantize!r} is not a choice.",
            "Use --quantize int8 or --quantize int4, or leave it out.",
        )


def stop_ids_of(tokenizer, eos: int | list[int] | None) -> set[int]:
    """The tokens that end an answer: the tokenizer's end and the model's generation config's."""
    stop_ids = {tokenizer.eos_token_id}
    stop_ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    stop_ids.discard(None)
    return stop_ids


class EngineFront(ABC):
    """What every engine offers its callers (the API, chat, compare): requests in, Generations
    out, read the same way whichever engine decodes them."""

    @abstractmethod
    def limits(self, spec: ModelSpec) -> Limits: ...

    def tokenizer(self, spec: ModelSpec):
        from tunesmith.models.loading import load_tokenizer

        return load_tokenizer(spec)

    @abstractmethod
    def submit(self, spec: ModelSpec, prompt_ids: list[int], params: SamplingParams) -> Generation:
        """Queue one request; read it with `stream` or `wait` (from a plain thread)."""

    @abstractmethod
    async def submit_async(self, spec: ModelSpec, runs: list[Run]) -> list[Generation]:
        """Queue requests from a coroutine; read them with `stream_async` or `wait_async`."""

    @abstractmethod
    def warm(self, spec: ModelSpec) -> None:
        """Load `spec` now, so that no request's latency includes loading it."""

    @abstractmethod
    def close(self, timeout: float = 30.0) -> None: ...

    def stream(self, seq: Generation) -> Iterator[Delta]:
        while True:
            delta = _unwrap(seq.deltas.get())
            yield delta
            if delta.finish_reason is not None:
                return

    async def stream_async(self, seq: Generation) -> AsyncIterator[Delta]:
        while True:
            delta = _unwrap(await seq.deltas.get())
            yield delta
            if delta.finish_reason is not None:
                return

    def wait(self, seq: Generation) -> Completion:
        for _ in self.stream(seq):
            pass
        return seq.completion()

    async def wait_async(self, seq: Generation) -> Completion:
        async for _ in self.stream_async(seq):
            pass
        return seq.completion()

    def chat(
        self,
        spec: ModelSpec,
        messages: list[Message],
        params: SamplingParams,
        tools: list[dict] | None = None,
    ) -> Completion:
        prompt = encode_prompt(self.tokenizer(spec), messages, tools)
        return self.wait(self.submit(spec, prompt, params))


class Engine(EngineFront):
    """Thread-safe front: `submit` from any thread, `submit_async` from a coroutine. Loading and
    decoding run on the torch thread (models/threads.py): the scheduler loop is queued there
    whenever there is work."""

    IDLE_SECONDS = 0.2  # an idle loop gives the torch thread back to other work this soon
    SLOT_ADMITS = 4  # newcomers prefilled per loop on the slot batch

    def __init__(
        self,
        max_batch: int = 16,
        device: str | None = None,
        merge_adapters: bool = False,
        fast_decode: bool = True,
        quantize: str | None = None,
    ) -> None:
        """`merge_adapters`: serve each adapter from its own copy of the weights with the adapter
        merged in (the speed of a plain model, one extra copy of the weights per adapter) instead
        of attaching adapters to one shared base (multi-LoRA: any mix of adapters in one batch,
        ~1.5x slower decoding on a CPU, where PEFT's per-layer overhead dominates).
        `fast_decode`: decode Llama-family models on the slot cache (infer/slots.py), the
        default; False keeps transformers' own forward (infer/batch.py) for every model.
        `quantize`: "int8" (weight-only int8) or "int4" (a 4-bit checkpoint's numbers as 4-bit)
        on the slot path, opt-in: both change the answers a little (infer/weights.py)."""
        self.max_batch = max_batch
        self.fast_decode = fast_decode
        self.quantize = quantize
        self.device = device
        self.merge_adapters = merge_adapters
        self._bases: dict[str, Loaded] = {}
        self._waiting: queue.Queue[tuple[Loaded, Generation]] = queue.Queue()
        self._tasks: queue.Queue[tuple[Callable, Future]] = queue.Queue()
        self._wake = threading.Event()
        self._state = threading.Lock()  # guards _running
        self._running = False
        self._closed = False
        atexit.register(self.close)

    # --- models ----------------------------------------------------------------------------------
    def load(self, spec: ModelSpec) -> tuple[Loaded, str | None]:
        """The loaded model for `spec` and the adapter name to use (None: no adapter switch)."""
        return self._on_torch_thread(lambda: self._load_now(spec))

    def warm(self, spec: ModelSpec) -> None:
        self.load(spec)

    def _load_now(self, spec: ModelSpec) -> tuple[Loaded, str | None]:
        from tunesmith.models.loading import weights_folder

        key = weights_folder(spec)
        if spec.adapter is not None and self.merge_adapters and not self._four_bit(key):
            key = f"{key}+{spec.adapter}"
            return self._bases.get(key) or self._load_base(spec, key, merge=True), None
        loaded = self._bases.get(key) or self._load_base(spec, key)
        if spec.adapter is None:
            return loaded, None
        folder = str(spec.adapter)
        if folder not in loaded.adapters:
            self._attach(loaded, folder)
        return loaded, loaded.adapters[folder]

    def _four_bit(self, folder: str) -> bool:
        """`--quantize int4` will hold the base as 4-bit on the slot cache (infer/weights.py):
        adapters are then served beside it, not merged, even where `merge_adapters` asks."""
        from tunesmith.models.hardware import pick_device

        device = self.device or pick_device("auto")
        return self.fast_decode and self.quantize == "int4" and device == "cpu" and four_bit(folder)

    def _load_base(self, spec: ModelSpec, key: str, merge: bool = False) -> Loaded:
        from tunesmith.models.hardware import inference_dtype, pick_device
        from tunesmith.models.loading import load_model, load_tokenizer

        device = self.device or pick_device("auto")
        if merge:  # merged in fp32, then cast: no bf16 rounding of the adapter's update
            model = load_model(spec, dtype=torch.float32, device=device).merge_and_unload()
            model = model.to(inference_dtype(device)).eval()
        else:
            base_spec = ModelSpec(
                name=spec.base, kind=spec.kind, base=spec.base, weights=spec.weights
            )
            model = load_model(base_spec, dtype=inference_dtype(device), device=device)
        tokenizer = load_tokenizer(spec)
        stop_ids = stop_ids_of(tokenizer, getattr(model.generation_config, "eos_token_id", None))
        loaded = Loaded(model=model, tokenizer=tokenizer, device=device, stop_ids=stop_ids)
        if self.fast_decode and slots.supported(model):
            batch = SlotBatch(model, device, tokenizer.pad_token_id, quantize=self.quantize)
        else:
            batch = RunningBatch(model, device, tokenizer.pad_token_id)
        loaded.batch = batch
        self._bases[key] = loaded
        return loaded

    def _attach(self, loaded: Loaded, folder: str) -> None:
        """Attach an adapter once; later requests switch to it by name, never reloading it."""
        from peft import PeftModel

        name = "a" + hashlib.sha1(folder.encode()).hexdigest()[:12]
        if hasattr(loaded.model, "peft_config"):
            loaded.model.load_adapter(folder, adapter_name=name)
        else:
            loaded.model = PeftModel.from_pretrained(loaded.model, folder, adapter_name=name)
            loaded.model.eval()
            loaded.batch.model = loaded.model
        loaded.adapters[folder] = name
        if isinstance(loaded.batch, SlotBatch) and not slots.adapters_supported(loaded.model):
            # e.g. DoRA: served by transformers' own forward once the running rows finish
            log.info("adapter %s needs the general decode path", folder)
            loaded.general = True

    def limits(self, spec: ModelSpec) -> Limits:
        loaded, _ = self.load(spec)
        config = getattr(loaded.model, "config", None)
        context = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        scored = int(getattr(config, "vocab_size", 0) or len(loaded.tokenizer))
        return Limits(context=context, vocab=min(scored, len(loaded.tokenizer)))

    # --- requests --------------------------------------------------------------------------------
    def submit(self, spec: ModelSpec, prompt_ids: list[int], params: SamplingParams) -> Generation:
        return self._on_torch_thread(lambda: self._enqueue(spec, [(prompt_ids, params)], None))[0]

    async def submit_async(self, spec: ModelSpec, runs: list[Run]) -> list[Generation]:
        """Queue requests from a coroutine, all in one hop to the torch thread; the event loop
        waits for it without blocking. Read them with `stream_async` or `wait_async`."""
        loop = asyncio.get_running_loop()
        future = self._torch_future(lambda: self._enqueue(spec, runs, loop))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # the caller left during the hop: drop what got queued
            future.add_done_callback(_cancel_queued)
            raise

    def _enqueue(
        self, spec: ModelSpec, runs: list[Run], loop: asyncio.AbstractEventLoop | None
    ) -> list[Generation]:
        """On the torch thread: the model is loaded (or an adapter attached) between steps, and a
        guide's token table is built here, not on an event loop."""
        if any(not ids for ids, _ in runs):
            raise TunesmithError("A prompt needs at least one token.", param="prompt")
        loaded, adapter = self._load_now(spec)
        seqs = [
            Generation(ids, params, adapter, loaded.tokenizer, loaded.stop_ids, loop)
            for ids, params in runs
        ]
        for seq in seqs:
            self._waiting.put((loaded, seq))
        self._kick()
        return seqs

    # --- the scheduler ---------------------------------------------------------------------------
    def _on_torch_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` between scheduler steps (it may change models the loop is using)."""
        if threads.is_torch_thread():
            return fn()
        return self._torch_future(fn).result()

    def _torch_future(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._tasks.put((fn, future))
        self._kick()
        return future

    def _kick(self) -> None:
        """Make sure the scheduler loop is queued on the torch thread."""
        self._wake.set()
        with self._state:
            if self._running or self._closed:
                return
            self._running = True
        threads.submit(self._loop)

    def _loop(self) -> None:
        while True:
            if self._closed:
                self._shut_down()
                return
            self._run_tasks()
            self._admit()
            busy = [b for b in self._bases.values() if b.batch and len(b.batch)]
            for loaded in busy:  # one step per model in turn: models share the chip fairly
                try:
                    loaded.batch.step()
                except Exception as exc:  # the forward pass itself failed: a bug, not bad input
                    log.exception("decode step failed")  # (a row's own failure stays in its row)
                    loaded.batch.fail_all(exc)
            if busy:
                continue
            self._wake.clear()
            if self._wake.wait(timeout=self.IDLE_SECONDS) and not self._closed:
                continue
            with self._state:  # idle: give the torch thread back, unless work just arrived
                if (self._tasks.empty() and self._waiting.empty()) or self._closed:
                    self._running = False
                    return

    def _run_tasks(self) -> None:
        while True:
            try:
                fn, future = self._tasks.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():  # its caller stopped waiting
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _admit(self) -> None:
        """Move waiting requests into their model's running batch, up to max_batch rows."""
        newcomers: dict[int, tuple[Loaded, list[Generation]]] = {}
        held: list[tuple[Loaded, Generation]] = []
        while True:
            try:
                loaded, seq = self._waiting.get_nowait()
            except queue.Empty:
                break
            if seq.cancelled:  # its client left while it waited: nobody reads it, skip the prefill
                continue
            if loaded.general and isinstance(loaded.batch, SlotBatch):
                if len(loaded.batch):  # wait for the rows running on the slot batch to finish
                    held.append((loaded, seq))
                    continue
                loaded.batch = RunningBatch(loaded.model, loaded.device, loaded.batch.pad_id)
            batch = loaded.batch
            group = newcomers.setdefault(id(loaded), (loaded, []))[1]
            # The slot batch prefills newcomers one by one: a few per loop, so the torch
            # thread keeps answering its other tasks (a new request's model lookup) meanwhile.
            room = len(group) < self.SLOT_ADMITS if isinstance(batch, SlotBatch) else True
            if (
                room
                and len(batch) + len(group) < self.max_batch
                and (batch.can_merge() or not len(batch))
            ):
                group.append(seq)
            else:
                held.append((loaded, seq))
        for item in held:
            self._waiting.put(item)
        for loaded, group in newcomers.values():
            if not group:
                continue
            try:
                loaded.batch.admit(group)
                loaded.batch.drop_finished()
            except Exception as exc:
                log.exception("prefill failed")
                for seq in group:
                    seq.fail(exc)

    def _shut_down(self) -> None:
        closed = TunesmithError("The engine was closed before this request finished.")
        for loaded in self._bases.values():
            if loaded.batch is not None and len(loaded.batch):
                loaded.batch.fail_all(closed)
        with self._state:
            self._running = False

    def close(self, timeout: float = 30.0) -> None:
        """Stop the scheduler loop and wait for it: a thread killed inside torch at exit aborts."""
        self._closed = True
        self._wake.set()
        if threads.is_torch_thread():
            return
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._running:  # the models are no longer in use: let them go
            self._bases.clear()
            atexit.unregister(self.close)


def _unwrap(item: Delta | BaseException) -> Delta:
    """A failed request's queue holds the error instead of its last delta."""
    if isinstance(item, BaseException):
        raise item
    return item


def _cancel_queued(future: Future[list[Generation]]) -> None:
    """For sequences queued after their caller stopped waiting: nobody will read them."""
    if not future.cancelled() and future.exception() is None:
        for seq in future.result():
            seq.cancel()


ENGINES = ("builtin", "llamacpp", "vllm")


def open_engine(name: str, max_batch: int = 16, **builtin_options) -> EngineFront:
    """The engine called `name`: "builtin" (tunesmith's own, `Engine`, given `builtin_options`),
    "llamacpp" (llama.cpp's llama-server, infer/llamacpp.py) or "vllm" (vLLM's server,
    infer/vllm.py)."""
    if name == "llamacpp":
        from tunesmith.infer.llamacpp import LlamaCppEngine

        return LlamaCppEngine(max_batch=max_batch)
    if name == "vllm":
        from tunesmith.infer.vllm import VllmEngine

        return VllmEngine(max_batch=max_batch)
    if name != "builtin":
        raise TunesmithError(f"No engine is called {name!r}.", f"Use one of {', '.join(ENGINES)}.")
    return Engine(max_batch=max_batch, **builtin_options)
