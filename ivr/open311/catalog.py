"""The service catalogue (YAML data): services, their attributes, and the SMS keywords.

``<data_dir>/open311/services.yaml`` wins over the packaged ``ivr/open311/services.yaml``;
a wrong file is refused with ``file:line: key: problem`` (``yamlfile.DataError``).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ivr import yamlfile

DEFAULT_PATH = Path(__file__).with_name("services.yaml")
Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttributeValue(_Strict):
    key: str
    name: str


class Attribute(_Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    # False: an instruction shown to the person, not a question (GeoReport "variable").
    variable: bool = True
    datatype: Datatype
    required: bool = False
    datatype_description: str | None = None
    order: int | None = None
    description: str | None = None
    values: list[AttributeValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lists_have_values(self) -> Attribute:
        if self.datatype.endswith("valuelist") and not self.values:
            raise ValueError(f"a {self.datatype} needs values")
        if not self.variable and self.required:
            raise ValueError("an attribute with variable: false cannot be required")
        return self


class Service(_Strict):
    service_code: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    service_name: str
    description: str | None = None
    type: Literal["realtime", "batch", "blackbox"] = "realtime"
    group: str | None = None
    # SMS keywords (any language); also published as GeoReport "keywords".
    keywords: list[str] = Field(default_factory=list)
    agency: str | None = None
    service_notice: str | None = None
    # (its name in each language is in the language registry: languages.yaml, `services`)
    attributes: list[Attribute] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _names_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "names" in data:
            raise ValueError("names: a service's name in each language is in the language registry now "
                             "(menus/languages.yaml, `services:` of each language)")
        return data

    @property
    def metadata(self) -> bool:
        return bool(self.attributes)

    def attribute(self, code: str) -> Attribute | None:
        return next((a for a in self.attributes if a.code == code), None)


class Catalog(_Strict):
    jurisdiction_id: str
    contact: str = ""
    key_service: str = ""
    photo_service: str | None = None
    services: list[Service]
    # Set on load: when the file changed (the discovery "changeset").
    changeset: datetime = Field(default_factory=lambda: datetime.now(UTC), exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        codes = [s.service_code for s in self.services]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"service_code used twice: {', '.join(dupes)}")
        if self.photo_service is not None and self.photo_service not in codes:
            raise ValueError(f"photo_service {self.photo_service!r} is not a service_code")
        return self

    def get(self, code: str) -> Service | None:
        return next((s for s in self.services if s.service_code == code), None)

    def match_keyword(self, text: str) -> tuple[Service, str] | None:
        """The service whose keyword starts ``text`` (optional '#'), and the rest of the text."""
        stripped = text.strip()
        bare = stripped.lstrip("#").casefold()
        best: tuple[int, Service] | None = None
        for service in self.services:
            for keyword in service.keywords:
                k = keyword.casefold()
                if bare.startswith(k) and (len(bare) == len(k) or not _needs_boundary(k)
                                           or not bare[len(k)].isalnum()):
                    if best is None or len(k) > best[0]:
                        best = (len(k), service)
        if best is None:
            return None
        offset = len(stripped) - len(stripped.lstrip("#")) + best[0]
        return best[1], stripped[offset:].lstrip(" :,.!?-\n\t。、，：！")


def _needs_boundary(keyword: str) -> bool:
    # Scripts written with spaces need a whole word ("noise" must not match "noisey");
    # Chinese and Japanese run words together, so their keywords match as prefixes.
    return unicodedata.name(keyword[-1], "").split(" ")[0] not in ("CJK", "HIRAGANA", "KATAKANA")


def catalog_path(data_dir: Path) -> Path:
    override = data_dir / "open311" / "services.yaml"
    return override if override.exists() else DEFAULT_PATH


def load_catalog(path: Path) -> Catalog:
    located = yamlfile.load(path)
    catalog = yamlfile.validate(Catalog, located)
    catalog.changeset = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(microsecond=0)
    return catalog
