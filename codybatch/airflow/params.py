"""Trigger-form params of a job DAG, derived from the job model, and the conf -> spec merge."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from codybatch.settings import Settings
from codybatch.spec import ALIASES, REQUIRED, param_schemas


def job_params(settings: Settings, defaults: dict[str, Any] | None = None) -> dict[str, Param]:
    """One Param per job field (JSON schema from JobSpec), so Airflow refuses a bad conf at
    trigger time; `defaults` pre-fill them (campaigns)."""
    d = defaults or {}
    params = {}
    for name, schema in param_schemas(settings).items():
        fallback = schema.pop("default", [] if schema["type"] == "array" else "")
        if name in REQUIRED or "boolean" in schema["type"]:
            default = d.get(name, fallback)  # a switch shows its real default
        else:
            default = d.get(name)  # empty: not given, so a job type's default can apply
        if isinstance(default, tuple):
            default = list(default)
        params[name] = Param(default, **schema)
    return params


def spec_input(params: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
    """Merge the validated params and the raw conf into JobSpec input (conf aliases win)."""
    data = {k: v for k, v in params.items() if v is not None and v != "" and v != []}
    for key, value in (conf or {}).items():
        if key in ALIASES:
            data.pop(ALIASES[key], None)
        data[key] = value
    # Empty optional fields from the form mean "not given".
    return {k: v for k, v in data.items() if v is not None and v != "" and v != []}
