"""The engine: loads each base model once, attaches adapters by name, and runs a scheduler thread
that batches every request of the same base model continuously."""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.infer.lane import Lane
from tunesmith.infer.sampling import SamplingParams
from tunesmith.infer.sequence import Completion, Delta, Sequence
from tunesmith.models.catalog import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """One base model in memory, with the adapters attached to it so far."""

    model: object
    tokenizer: object
    device: str
    stop_ids: set[int]
    adapters: dict[str, str] = field(default_factory=dict)  # adapter folder -> PEFT adapter name
    lane: Lane | None = None


class Engine:
    """Thread-safe front: `submit` from any thread, one scheduler thread runs the models."""

    def __init__(self, max_batch: int = 16, device: str | None = None) -> None:
        self.max_batch = max_batch
        self.device = device
        self._bases: dict[str, Loaded] = {}
        self._load_lock = threading.Lock()
        self._model_lock = threading.Lock()  # held while a model runs or an adapter is attached
        self._waiting: queue.Queue[tuple[Loaded, Sequence]] = queue.Queue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close)

    # --- models ----------------------------------------------------------------------------------
    def load(self, spec: ModelSpec) -> tuple[Loaded, str | None]:
        """The loaded base for `spec` and the adapter name to use (None for the base itself)."""
        from tunesmith.models.loading import weights_folder

        with self._load_lock:
            key = weights_folder(spec)
            loaded = self._bases.get(key) or self._load_base(spec, key)
            if spec.adapter is None:
                return loaded, None
            folder = str(spec.adapter)
            if folder not in loaded.adapters:
                with self._model_lock:
                    self._attach(loaded, folder)
            return loaded, loaded.adapters[folder]

    def _load_base(self, spec: ModelSpec, key: str) -> Loaded:
        from tunesmith.models.hardware import inference_dtype, pick_device
        from tunesmith.models.loading import load_model, load_tokenizer

        device = self.device or pick_device("auto")
        base_spec = ModelSpec(name=spec.base, kind=spec.kind, base=spec.base, weights=spec.weights)
        model = load_model(base_spec, dtype=inference_dtype(device), device=device)
        tokenizer = load_tokenizer(spec)
        stop_ids = {tokenizer.eos_token_id}
        eos = getattr(model.generation_config, "eos_token_id", None)
        stop_ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        stop_ids.discard(None)
        loaded = Loaded(model=model, tokenizer=tokenizer, device=device, stop_ids=stop_ids)
        loaded.lane = Lane(model, device, tokenizer.pad_token_id)
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
            loaded.lane.model = loaded.model
        loaded.adapters[folder] = name

    def context_length(self, spec: ModelSpec) -> int:
        loaded, _ = self.load(spec)
        config = getattr(loaded.model, "config", None)
        return int(getattr(config, "max_position_embeddings", 2048) or 2048)

    def tokenizer(self, spec: ModelSpec):
        from tunesmith.models.loading import load_tokenizer

        return load_tokenizer(spec)

    # --- requests --------------------------------------------------------------------------------
    def submit(self, spec: ModelSpec, prompt_ids: list[int], params: SamplingParams) -> Sequence:
        loaded, adapter = self.load(spec)
        seq = Sequence(prompt_ids, params, adapter, loaded.tokenizer, loaded.stop_ids)
        self._ensure_thread()
        self._waiting.put((loaded, seq))
        self._wake.set()
        return seq

    def stream(self, seq: Sequence) -> Iterator[Delta]:
        while True:
            item = seq.deltas.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason is not None:
                return

    def wait(self, seq: Sequence) -> Completion:
        for _ in self.stream(seq):
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

    def chat_many(
        self, spec: ModelSpec, conversations: list[list[Message]], params: SamplingParams
    ) -> list[Completion]:
        """Many prompts at once (evaluation): all are queued, the scheduler batches them."""
        tokenizer = self.tokenizer(spec)
        seqs = [self.submit(spec, encode_prompt(tokenizer, m), params) for m in conversations]
        return [self.wait(s) for s in seqs]

    # --- the scheduler ---------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="tunesmith-engine", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._admit()
            busy = [b for b in self._bases.values() if b.lane and len(b.lane)]
            if not busy:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            for loaded in busy:  # one step per base in turn: bases share the chip fairly
                with self._model_lock:
                    try:
                        loaded.lane.step()
                    except Exception as exc:  # a failing step fails its requests, not the engine
                        log.exception("decode step failed")
                        loaded.lane.fail_all(exc)

    def _admit(self) -> None:
        """Move waiting requests into their base's running batch, up to max_batch rows."""
        newcomers: dict[int, tuple[Loaded, list[Sequence]]] = {}
        held: list[tuple[Loaded, Sequence]] = []
        while True:
            try:
                loaded, seq = self._waiting.get_nowait()
            except queue.Empty:
                break
            lane = loaded.lane
            group = newcomers.setdefault(id(loaded), (loaded, []))[1]
            if len(lane) + len(group) < self.max_batch and (lane.can_merge() or not len(lane)):
                group.append(seq)
            else:
                held.append((loaded, seq))
        for item in held:
            self._waiting.put(item)
        for loaded, group in newcomers.values():
            if not group:
                continue
            with self._model_lock:
                try:
                    loaded.lane.admit(group)
                    loaded.lane.drop_finished()
                except Exception as exc:
                    log.exception("prefill failed")
                    for seq in group:
                        seq.fail(exc)

    def close(self) -> None:
        """Stop the scheduler thread; a daemon thread killed inside torch at exit aborts."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
