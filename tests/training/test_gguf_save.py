"""The one trainer test on the real default policy (SmolLM2-135M GGUF, ~16 s to load): models loaded
from GGUF save as plain safetensors folders that transformers loads back unchanged."""

import torch

from app.training.common import load_causal_lm, rebuild, save_model
from app.training.reward import reward_pad_id
from tests.policy.models import default_policy_file


def test_real_default_policy_gguf_saves_as_causal_lm_and_reward_backbone(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from app.training.common import load_tokenizer

    gguf = str(default_policy_file())
    tokenizer = load_tokenizer(str(tiny_model_dir))  # the same tokenizer, without parsing it from the GGUF again
    model = load_causal_lm(gguf).eval()
    save_model(model, tokenizer, tmp_path / "lm")

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "lm", use_safetensors=True).eval()
    assert not hasattr(saved.config, "quantization_config")
    assert (tmp_path / "lm" / "model.safetensors").exists()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        assert torch.equal(saved(input_ids=ids).logits, model(input_ids=ids).logits)
    assert AutoTokenizer.from_pretrained(tmp_path / "lm").chat_template == tokenizer.chat_template

    pad = reward_pad_id(tokenizer)
    reward = rebuild(AutoModelForSequenceClassification, model, num_labels=1, pad_token_id=pad)
    save_model(reward, tokenizer, tmp_path / "rm")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", use_safetensors=True)
    assert loaded.config.num_labels == 1 and loaded.config.pad_token_id == pad
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert torch.equal(loaded.model.layers[-1].mlp.down_proj.weight, model.model.layers[-1].mlp.down_proj.weight)
    assert torch.equal(loaded.score.weight, reward.score.weight)
