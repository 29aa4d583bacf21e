"""Turning pydantic validation errors into messages that name the file, the key and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import BaseModel, ValidationError


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The field names allowed at ``loc`` (the parent of the offending key), when they can be found."""
    for part in loc[:-1]:
        if model is None:
            return []
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue  # a dict key or list index: stay on the same model
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        for arg in getattr(annotation, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _job_of(document: object, loc: tuple) -> str:
    """`` (job 'NAME')`` when ``loc`` lies inside a mapping of ``document`` that has a ``job_name``."""
    job, node = "", document
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(node.get("job_name"), str):
            job = f" (job {node['job_name']!r})"
    return job


def describe_validation_error(source: str | Path, exc: ValidationError, model: type[BaseModel] | None = None,
                              document: object = None) -> str:
    """One line per problem: ``FILE: key 'a.b': what is wrong; fix``.

    For an unknown key the fix suggests the closest allowed key (``difflib``) and lists the allowed ones.
    Given the validated ``document``, a key inside a scrape config also names its job.
    """
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if not loc and err["type"] == "value_error":  # a check across keys: its message names them
            lines.append(f"{source}: {err['msg'].removeprefix('Value error, ')}")
            continue
        key = ".".join(str(p) for p in loc) or "(top level)"
        job = _job_of(document, loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            fix = f"did you mean '{guess[0]}'?" if guess else "remove it"
            if allowed:
                fix += f" (allowed here: {', '.join(allowed)})"
            lines.append(f"{source}: key '{key}'{job} is not a known setting; {fix}")
        else:
            given = err.get("input")
            shown = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
            lines.append(f"{source}: key '{key}'{job}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return "\n".join(lines)
