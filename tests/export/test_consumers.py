"""The exports load unchanged in their consumers: `datasets`, pyarrow, TRL's DPO and reward trainers."""

import pytest

from tests.export.planted import plant

JSONL_QUERIES = ["format=pairs", "format=pairs&style=conversational&ties=keep", "format=rankings",
                 "format=ratings", "format=sft"]


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Nothing may come from a model hub: offline flags, and caches under the test's directory."""
    for name, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("HF_HOME", str(tmp_path / "hf")),
                        ("TRANSFORMERS_OFFLINE", "1"), ("WANDB_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "datasets-cache"


@pytest.fixture
def trl_state():
    """TRL's trainers set accelerate's process-wide state (CPU, their precision); later tests in this process
    (Preflab's own trainers) must be able to set their own."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def _download(client, planted, query: str, path):
    response = client.get(f"/api/v1/projects/{planted.project.id}/export?{query}", headers=planted.admin_headers)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return response.content


def test_datasets_loads_every_jsonl_format(client, db, tmp_path, offline_hub):
    import datasets

    planted = plant(db)
    for n, query in enumerate(JSONL_QUERIES):
        path = tmp_path / f"export-{n}.jsonl"
        lines = _download(client, planted, query, path).splitlines()
        loaded = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(offline_hub))
        assert loaded.num_rows == len(lines) > 0, query
        if query.startswith("format=pairs&style"):
            assert loaded[0]["prompt"][0]["role"] == "user" and loaded[0]["chosen"][0]["role"] == "assistant"
        if query == "format=rankings":
            assert {"completions", "prompt_messages", "split", "labeler"} <= set(loaded.column_names)
            assert len(loaded[0]["completions"]) == 3


@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_trl_dpo_and_reward_trainers_take_the_pairs_export(client, db, tmp_path, offline_hub, tiny_model_dir, style,
                                                           trl_state):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    planted = plant(db)
    path = tmp_path / "pairs.jsonl"
    _download(client, planted, f"format=pairs&style={style}", path)
    train = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(offline_hub))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    common = {"max_steps": 1, "per_device_train_batch_size": 4, "report_to": [], "save_strategy": "no",
              "logging_strategy": "no", "use_cpu": True, "learning_rate": 1e-2}

    policy = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    dpo = DPOTrainer(model=policy, args=DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=128, **common),
                     train_dataset=train, processing_class=tokenizer)
    dpo.train()
    assert dpo.state.global_step == 1
    assert any(not torch.equal(before[name], p) for name, p in policy.named_parameters())

    reward = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    reward.config.pad_token_id = tokenizer.pad_token_id
    head = reward.score.weight.detach().clone()
    trainer = RewardTrainer(model=reward, args=RewardConfig(output_dir=str(tmp_path / "rm"), max_length=128, **common),
                            train_dataset=train, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1
    assert not torch.equal(head, reward.score.weight)
