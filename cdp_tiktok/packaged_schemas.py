"""JSON Schemas shipped inside the package, read and compiled once per process."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema


@cache
def packaged_schema(package: str, name: str) -> dict[str, Any]:
    """The JSON Schema file ``name`` of ``package`` (read once; do not modify it)."""
    text = resources.files(package).joinpath(name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def packaged_validator(package: str, name: str) -> jsonschema.protocols.Validator:
    """A validator for :func:`packaged_schema`, of the draft the schema declares; built once."""
    schema = packaged_schema(package, name)
    cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator
