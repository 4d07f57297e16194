"""`kabuild reproduce`: two builds on two nodes with variations, compared, checked against references.

runner (the run), pair (the two engines), options (what was asked), identity (when an earlier run can
answer), explain (culprits from evidence), culprits (rebuilding: the null hypothesis, then halving),
timing (the report's time by phase)."""

from kabuild.reproduce.options import Options
from kabuild.reproduce.runner import reproduce

__all__ = ["Options", "reproduce"]
