"""Exceptions of the load generator.

Tree::

    LoadgenError
    ├── ScenarioError     a scenario file or --set override is wrong (one line: file, field, value, allowed)
    └── PlanError         this host cannot run the plan (file limits, ports, memory)
"""

from __future__ import annotations


class LoadgenError(Exception):
    """Root of the load generator's exceptions."""


class ScenarioError(LoadgenError):
    """A scenario mistake, said in one line."""


class PlanError(LoadgenError):
    """The host cannot run the plan; the message says why and what would fit."""
