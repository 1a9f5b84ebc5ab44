"""Controllers, relaxations and the compute budget."""

from metasparse.control.budget import budget_penalty, expected_flops_fraction
from metasparse.control.controller import Controller, ControllerSpec

__all__ = ["Controller", "ControllerSpec", "budget_penalty", "expected_flops_fraction"]
