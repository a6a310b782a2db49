"""Train/validation/test splits: a fixed hash of (seed, key), the same in every process and run."""

import os
import subprocess
import sys
from collections import Counter

import pytest
from pydantic import ValidationError

from app.export.lookups import labeler_pseudonym, split_key, split_of
from app.export.schemas import ExportOptions, SplitBy

FRACTIONS = (0.8, 0.1, 0.1)


def test_split_follows_the_fractions_and_the_seed():
    keys = [f"prompt:{i}" for i in range(20_000)]
    counts = Counter(split_of(k, 7, FRACTIONS) for k in keys)
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02
    assert abs(counts["validation"] / 20_000 - 0.1) < 0.01 and abs(counts["test"] / 20_000 - 0.1) < 0.01
    reseeded = sum(split_of(k, 8, FRACTIONS) != split_of(k, 7, FRACTIONS) for k in keys)
    assert reseeded > 2_000  # another seed is another split
    assert {split_of(k, 7, (1.0, 0.0, 0.0)) for k in keys} == {"train"}


def test_split_and_pseudonym_are_the_same_in_another_process():
    here = [split_of(f"user:{i}", 3, FRACTIONS).value for i in range(50)] + [labeler_pseudonym("s" * 40, 12)]
    code = ("from app.export.lookups import labeler_pseudonym, split_of; "
            "print(','.join([split_of(f'user:{i}', 3, (0.8, 0.1, 0.1)).value for i in range(50)]"
            " + [labeler_pseudonym('s' * 40, 12)]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().split(",") == here


def test_split_key_falls_back_to_the_prompt():
    assert split_key(SplitBy.user, 5, "alice") == split_key(SplitBy.user, 6, "alice") == "user:alice"
    assert split_key(SplitBy.user, 5, None) == "prompt:5" != split_key(SplitBy.prompt, 6, "alice")
    assert labeler_pseudonym("a" * 40, 1) != labeler_pseudonym("b" * 40, 1)


def test_split_options_parse_and_check():
    assert ExportOptions.model_validate({"splits": "0.8, 0.1,0.1"}).splits == FRACTIONS
    assert ExportOptions.model_validate({"splits": ["0.7,0.2,0.1"]}).splits == (0.7, 0.2, 0.1)
    assert ExportOptions.model_validate({"exclude_flags": ["b,a", "a"]}).exclude_flags == ["a", "b"]
    for bad in ({"splits": "0.8,0.1"}, {"splits": "0.9,0.2,-0.1"}, {"exclude_flags": "Bad-Key"}):
        with pytest.raises(ValidationError):
            ExportOptions.model_validate(bad)
