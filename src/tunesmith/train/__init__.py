"""One training run from a config: supervised fine-tuning (LoRA or full) on TRL + PEFT."""
