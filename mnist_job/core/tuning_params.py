"""The ``tune:`` section of the params: the study's size and budget, and the search space.

Part of ``Params`` (mnist_job/core/config.py), so params.yaml, ``--set tune.search.dropout.high=0.5``
and the validation (one error per bad field, exit 2) work as for every other section. Each search
dimension names a training param (``SEARCHABLE``) and is a range (``low``/``high``, ``log``) or a list
of ``choices``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# search key -> the params key a trial sets, and whether its values are whole numbers
SEARCHABLE = {
    "learning_rate": ("train.learning_rate", False),
    "weight_decay": ("train.weight_decay", False),
    "batch_size": ("train.batch_size", True),
    "width": ("model.width", True),
    "dropout": ("model.dropout", False),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)  # as config.py's sections


class Dimension(_Strict):
    low: float | None = Field(None, description="lowest value (a range)")
    high: float | None = Field(None, description="highest value (a range)")
    log: bool = Field(False, description="sample the range on a log scale")
    choices: list[float] | None = Field(None, min_length=1, description="the values to pick from (instead of a range)")

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        ranged = self.low is not None or self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give either low and high, or choices")
        if ranged:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.low >= self.high:
                raise ValueError(f"inverted or empty range: low {self.low} is not below high {self.high}")
            if self.log and self.low <= 0:
                raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self


def _default_space() -> dict[str, Dimension]:
    return {
        "learning_rate": Dimension(low=0.0005, high=0.01, log=True),
        "weight_decay": Dimension(low=0.000001, high=0.01, log=True),
        "batch_size": Dimension(choices=[64, 128, 256]),
        "width": Dimension(choices=[8, 16, 32, 48]),
        "dropout": Dimension(low=0.0, high=0.4),
    }


class TuneParams(_Strict):
    trials: int = Field(8, ge=1, le=10000, description="trials in the study (across resumes)")
    max_concurrent: int = Field(1, ge=1, le=1024, description="trials running at once")
    budget_s: float = Field(3600.0, gt=0.0, le=7 * 86400.0, description="wall-clock budget of the whole study")
    max_epochs: int = Field(3, ge=1, le=100, description="epochs a trial may train (ASHA's max_t)")
    grace_epochs: int = Field(1, ge=1, le=100, description="epochs every trial trains before ASHA may stop it")
    reduction_factor: int = Field(2, ge=2, le=10, description="ASHA keeps 1/reduction_factor of the trials per rung")
    study_name: str = Field("", max_length=100, description="study (Tune run) name; an unfinished study of this "
                                                            "name is resumed (empty: a new timestamped name)")
    storage_path: str = Field("outputs/tune", min_length=1, description="study state and trial checkpoints: a "
                                                                        "local path or s3://bucket/prefix")
    search: dict[str, Dimension] = Field(default_factory=_default_space, description="the search space")

    @field_validator("search", mode="before")
    @classmethod
    def _known_keys(cls, search):
        unknown = [key for key in (search if isinstance(search, dict) else {}) if key not in SEARCHABLE]
        if unknown:
            raise ValueError(f"not searchable: {', '.join(map(str, unknown))}; searchable: {', '.join(SEARCHABLE)}")
        return search

    @model_validator(mode="after")
    def _check(self) -> TuneParams:
        problems = []
        if not self.search:
            problems.append("tune.search: the search space is empty; give at least one of " + ", ".join(SEARCHABLE))
        for key, dimension in self.search.items():
            whole = SEARCHABLE.get(key, ("", False))[1]
            values = dimension.choices or [dimension.low, dimension.high]
            if whole and any(float(v) != int(v) for v in values):
                problems.append(f"tune.search.{key}: whole numbers only (got {values})")
        if self.grace_epochs > self.max_epochs:
            problems.append(f"tune.grace_epochs ({self.grace_epochs}) exceeds tune.max_epochs ({self.max_epochs})")
        if self.study_name and not all(c.isalnum() or c in "-_." for c in self.study_name):
            problems.append("tune.study_name may only hold letters, digits, '-', '_' and '.'")
        if problems:
            raise ValueError("; ".join(problems))
        return self
