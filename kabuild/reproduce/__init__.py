"""`kabuild reproduce`: two builds on two nodes with variations, compared, checked against references.

runner (the run), pair (the two engines), options (what was asked), identity (when an earlier run can
answer), culprits (rebuilding one variation at a time)."""

from kabuild.reproduce.options import Options
from kabuild.reproduce.runner import reproduce

__all__ = ["Options", "reproduce"]
