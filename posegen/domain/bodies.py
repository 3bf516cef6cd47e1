"""The one base class of request bodies: camelCase JSON, unknown fields refused, immutable.

A body validated here is also what a flow takes as its parameters, so validation is written once.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelBody(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
