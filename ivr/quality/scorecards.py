"""Scorecards as data (``scorecards.yaml``): criteria, their maximum and weight, names in Korean
and English. A site's ``<data_dir>/scorecards.yaml`` replaces the package's own. Errors name
the file and line (``ivr.yamlfile``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ivr import yamlfile

FILE = "scorecards.yaml"
DEFAULT_FILE = Path(str(resources.files("ivr"))) / "quality" / FILE
KEY = r"^[a-z][a-z0-9_]{0,39}$"


class Names(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ko: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY)
    name: Names
    max: int = Field(ge=1, le=10)
    weight: float = Field(1.0, gt=0, le=10)


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Names
    criteria: list[Criterion] = Field(min_length=1)
    # Contacts of these channels are sampled for it (empty: every channel).
    channels: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Scorecard:
        keys = [c.key for c in self.criteria]
        if len(set(keys)) != len(keys):
            raise ValueError("criteria: each key once")
        return self

    def score(self, raw: Any) -> tuple[dict[str, int], float]:
        """Checked scores (every criterion, a whole number 0..max) and the weighted total 0-100.

        ``ValueError`` names the first criterion that is missing or out of range."""
        if not isinstance(raw, dict):
            raise ValueError(f"scores: an object with {', '.join(c.key for c in self.criteria)}")
        unknown = sorted(set(raw) - {c.key for c in self.criteria})
        if unknown:
            raise ValueError(f"scores.{unknown[0]}: not a criterion of this scorecard")
        scores: dict[str, int] = {}
        for c in self.criteria:
            value = raw.get(c.key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= c.max:
                raise ValueError(f"scores.{c.key}: a whole number 0-{c.max} / 0~{c.max} 사이 점수")
            scores[c.key] = value
        weights = sum(c.weight for c in self.criteria)
        total = sum(scores[c.key] / c.max * c.weight for c in self.criteria) / weights * 100
        return scores, round(total, 1)


class Scorecards(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scorecards: dict[str, Scorecard] = Field(min_length=1)


def load_scorecards(data_dir: Path | None = None) -> Scorecards:
    """The site's scorecards (``<data_dir>/scorecards.yaml``), else the package's."""
    path = data_dir / FILE if data_dir is not None and (data_dir / FILE).is_file() else DEFAULT_FILE
    located = yamlfile.load(path)
    return yamlfile.validate(Scorecards, located)
