"""The export request bodies (API and flow parameters): formats checked against the catalog."""

from __future__ import annotations

import uuid
from typing import Final

from pydantic import Field, field_validator

from posegen.domain.bodies import CamelBody
from posegen.domain.exports import ExportFormat, Fill, resolve_formats
from posegen.errors import ValidationFailed

MAX_FORMATS_PER_REQUEST: Final = 20
MAX_POSES_PER_REQUEST: Final = 500


def _format_names(value: list[str]) -> list[str]:
    try:
        return [fmt.name for fmt in resolve_formats(value)]
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None


class ExportRequest(CamelBody):
    """Body of POST /generations/{id}/exports and the `multi-format-export` flow's parameter."""

    formats: list[str] = Field(min_length=1, max_length=MAX_FORMATS_PER_REQUEST)
    pose_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_POSES_PER_REQUEST)
    # Opt-in: `ai_expand` has FLUX fill what the pose's own pixels cannot (paid per file).
    fill: Fill = Fill.REFRAME

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        return _format_names(value)

    @property
    def specs(self) -> tuple[ExportFormat, ...]:
        return resolve_formats(self.formats)


class RegenerateExport(CamelBody):
    """Body of POST /poses/{id}/regenerate-export."""

    format: str

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _format_names([value])[0]


class ExportFormatsSetting(CamelBody):
    """Body of PUT /settings/export-formats: the formats the nightly export renders for a user.
    An empty list turns the nightly export off for that user."""

    formats: list[str] = Field(max_length=MAX_FORMATS_PER_REQUEST)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        return _format_names(value) if value else []
