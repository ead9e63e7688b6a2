"""Step types: built-ins (shell, sql, redis, http, s3, control steps) and plugins."""

from .base import StepContext, StepSpec, StepType, get_step_type, step_types

__all__ = ["StepContext", "StepSpec", "StepType", "get_step_type", "step_types"]
