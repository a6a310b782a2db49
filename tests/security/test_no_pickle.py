"""Checkpoints and uploads are never unpickled: weights load from safetensors (or GGUF) only."""

import re
import shutil
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
# Loaders that unpickle what they read.
UNPICKLERS = re.compile(r"\b(?:import pickle|from pickle|cloudpickle|import dill|joblib\.load|read_pickle|"
                        r"allow_pickle\s*=\s*True|weights_only\s*=\s*False)")


def test_no_code_in_app_unpickles():
    found = []
    for source in APP.rglob("*.py"):
        text = source.read_text()
        found += [f"{source.relative_to(APP)}: {m.group(0)}" for m in UNPICKLERS.finditer(text)]
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                found.append(f"{source.relative_to(APP)}: torch.load without weights_only=True")
    assert found == []


def test_a_pickled_checkpoint_is_refused(tiny_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from app.policy.base import PolicyError
    from app.policy.transformers_backend import TransformersPolicy

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # the classic pickled checkpoint
    assert (pickled / "pytorch_model.bin").exists() and not list(pickled.glob("*.safetensors"))

    with pytest.raises(PolicyError, match="safetensors"):
        TransformersPolicy(str(pickled), device="cpu")
    assert TransformersPolicy(str(tiny_model_dir), device="cpu").model is not None  # safetensors load
