"""The flow factory of composed jobs: a manager's flow rebuilt from its recipe.

A manager composes a flow from registry pieces and its own tasks
(`pieceworks.registry.Composition`) and posts its recipe as a job
(`pieceworks.execution.composed.post_composed`). The conductor that claims
the job calls `composed_job_flow` (by the dotted path `COMPOSED_FACTORY`,
persisted in the job) with the recipe, the names of the backends and the
store the pieces belong to, and `resolve`, the host's own configuration.
It populates a fresh `Registry` from that configuration (each backend's
driver loaded by entry-point name, registered with `register_backend`
against the store) and rebuilds the flow with `rebuild`: the same
registrations by their stable names, built with the recorded arguments, so
the same atom names, and TaskFlow resumes the flow where the last conductor
left it. No closure travels: manager tasks are imported by path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from taskflow.flow import Flow

from pieceworks.common_algorithms.opening import Resolver, job_spec, open_backend, open_store
from pieceworks.common_algorithms.operations.registration import register_backend
from pieceworks.protocols import ConfigError
from pieceworks.registry import Registry, rebuild

__all__ = ["COMPOSED_FACTORY", "Resolver", "composed_job_flow", "composed_registry"]

#: The dotted path persisted in posted composed jobs.
COMPOSED_FACTORY: Final = "pieceworks.common_algorithms.composed.composed_job_flow"


def composed_registry(backends: Sequence[str], store: str, resolve: Resolver | None) -> Registry:
    """A registry holding `backends`' pieces against `store`, from the host's configuration.

    Raise `ConfigError` for a name `resolve` does not know (or without
    `resolve`), `InvalidDriver` for a backend that completes no strategy.
    """
    the_store = open_store(job_spec("store", store, resolve))
    registry = Registry()
    for name in backends:
        register_backend(registry, open_backend(job_spec("backend", name, resolve)), the_store)
    return registry


def composed_job_flow(
    recipe: Mapping[str, Any],
    backends: Sequence[str],
    store: str,
    resolve: Resolver | None = None,
) -> Flow:
    """The flow of a composed job (a conductor's flow factory); see the module docstring.

    Raise `ConfigError` for a malformed recipe or unknown names, `NotFound`
    for a recorded registration this host's registry lacks.
    """
    if not isinstance(recipe, Mapping) or "steps" not in recipe:
        raise ConfigError("a composed job carries no recipe (a mapping with 'steps')")
    return rebuild(recipe, composed_registry(backends, store, resolve))
