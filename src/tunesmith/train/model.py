"""Pure translations of the run config (to PEFT's LoraConfig and TRL's SFTConfig) and the model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.models.hardware import pick_device, pick_precision
from tunesmith.models.spec import ModelSpec
from tunesmith.train.config import Resolved, SFTConfig

if TYPE_CHECKING:
    import trl
    from peft import LoraConfig
    from transformers import PreTrainedModel


def lora_config(config: SFTConfig) -> LoraConfig | None:
    """PEFT's LoraConfig for a LoRA run, None for a full fine-tune."""
    from peft import LoraConfig

    if config.tuning != "lora":
        return None
    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.lora_alpha or 2 * lora.r,
        lora_dropout=lora.lora_dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def trainer_args(
    config: SFTConfig, resolved: Resolved, run_dir: Path, device: str, precision: str
) -> dict:
    """The Trainer settings every method's TRL config shares."""
    return {
        "output_dir": str(run_dir / "checkpoints"),
        "num_train_epochs": resolved.epochs,
        "learning_rate": resolved.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": round(config.warmup_ratio * resolved.total_steps),
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "data_seed": config.seed,
        "logging_steps": 1,
        "save_strategy": "epoch",
        "bf16": precision == "bf16",
        "use_cpu": device == "cpu",
        "gradient_checkpointing": config.gradient_checkpointing,
        "report_to": [],
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        # Under torchrun (WORLD_SIZE set) the Trainer wraps the model in DDP on this backend.
        "ddp_backend": ("gloo" if device == "cpu" else "nccl") if config.world_size > 1 else None,
    }


def trl_args(
    config: SFTConfig,
    resolved: Resolved,
    run_dir: Path,
    device: str,
    precision: str,
    has_eval: bool,
) -> trl.SFTConfig:
    """TRL's SFTConfig for this run (preference runs too: their trainer is transformers' own and
    reads only its fields). The data arrives tokenized, so TRL's preparation is skipped."""
    import trl

    return trl.SFTConfig(
        **trainer_args(config, resolved, run_dir, device, precision),
        # batch_size is per optimizer step, split over ranks and accumulated micro-batches
        per_device_train_batch_size=resolved.micro_batch_size,
        per_device_eval_batch_size=resolved.micro_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=resolved.eval_steps if has_eval else None,
        max_length=config.max_length,
        dataset_kwargs={"skip_prepare_dataset": True},
    )


def build_model(config: SFTConfig, base: ModelSpec) -> tuple[PreTrainedModel, str, str]:
    """The model to train, with trainable adapters or all weights trainable.

    Weights that train stay fp32 (autocast computes in bf16, the optimizer updates fp32). Frozen
    base weights under LoRA are loaded in bf16 when computing in bf16: autocast would otherwise
    cast them on every forward (~10% of a CPU step), and they take half the memory.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.models.loading import weights_folder
    from tunesmith.train import attention

    device = pick_device(config.device)
    precision = pick_precision(config.precision, device)
    frozen_bf16 = config.tuning == "lora" and precision == "bf16"
    kwargs: dict = {"dtype": torch.bfloat16 if frozen_bf16 else torch.float32}
    if config.packing and device == "cpu":
        # Each packed example attends only to itself, block by block. On a GPU the fused SDPA
        # kernels take the block-diagonal mask at little cost, and many tiny calls would not pay.
        kwargs["attn_implementation"] = attention.NAME
    if config.load_in_4bit:
        kwargs.update(_quantized(device, config))
    model = AutoModelForCausalLM.from_pretrained(weights_folder(base), **kwargs)
    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    model.config.use_cache = False
    if base.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(
            model, str(base.adapter), is_trainable=config.tuning == "lora"
        )
        if config.tuning == "full":
            model = model.merge_and_unload()
        return model, device, precision
    if config.tuning == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(config))
    return model, device, precision


def _quantized(device: str, config: SFTConfig) -> dict:
    import torch

    if device != "cuda" or config.tuning != "lora":
        raise TunesmithError(
            "load_in_4bit (QLoRA) needs tuning lora on a CUDA GPU.",
            "Drop --load-in-4bit on this machine; LoRA in bf16 trains the same adapters.",
            param="load_in_4bit",
        )
    try:
        from transformers import BitsAndBytesConfig
    except ImportError as exc:  # pragma: no cover - transformers always has it
        raise TunesmithError("This transformers build lacks BitsAndBytesConfig.") from exc
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        ),
        "dtype": torch.bfloat16,
    }
