"""Training parameters, validated by the web process (no torch here)."""

from pydantic import BaseModel, ConfigDict, Field


class _TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1, le=100, description="passes over the training judgments")
    batch_judgments: int = Field(4, ge=1, le=1024, description="judgments per forward batch")
    grad_accum: int = Field(1, ge=1, le=1024, description="batches per optimizer step")
    max_length: int = Field(512, ge=16, le=131072, description="prompt + completion tokens; longer is truncated")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of prompts held out for evaluation")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    max_steps: int | None = Field(None, ge=1, le=10_000_000, description="stop after this many optimizer steps")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)


class RewardParams(_TrainParams):
    """A reward model: a policy backbone with a scalar head, trained on ranked completions."""

    lr: float = Field(1e-5, gt=0.0, le=1.0)
    use_margin: bool = Field(False, description="subtract the rank difference from r_w - r_l (InstructGPT margin)")
    center_coef: float = Field(0.01, ge=0.0, le=10.0,
                               description="weight of the (r_w + r_l)^2 penalty that keeps rewards near zero")


class DPOParams(_TrainParams):
    """A DPO policy: the initial model is both the start and the frozen reference."""

    lr: float = Field(1e-6, gt=0.0, le=1.0)
    beta: float = Field(0.1, gt=0.0, le=100.0, description="strength of the pull towards the reference")
