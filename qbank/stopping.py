"""Stopping rules: fixed length, or a standard-error target with minimum and maximum length."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FixedLength", "StandardError"]


@dataclass(frozen=True)
class FixedLength:
    """Stop after ``length`` items."""

    length: int

    def __post_init__(self):
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")

    @property
    def max_length(self) -> int:
        return self.length

    @property
    def min_length(self) -> int:
        return self.length

    def done(self, n_administered, se) -> np.ndarray:
        """Boolean (n_examinees,): True where the test is over."""
        return np.asarray(n_administered) >= self.length

    def to_dict(self) -> dict:
        return {"rule": "fixed_length", "length": self.length}


@dataclass(frozen=True)
class StandardError:
    """Stop once SE <= ``se_target`` after at least ``min_length`` items, or at ``max_length``."""

    se_target: float
    min_length: int = 1
    max_length: int = 50

    def __post_init__(self):
        if self.se_target <= 0:
            raise ValueError(f"se_target must be > 0, got {self.se_target}")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(
                f"need 1 <= min_length <= max_length, got {self.min_length} and {self.max_length}"
            )

    def done(self, n_administered, se) -> np.ndarray:
        n_administered = np.asarray(n_administered)
        return (n_administered >= self.max_length) | (
            (n_administered >= self.min_length) & (np.asarray(se) <= self.se_target)
        )

    def to_dict(self) -> dict:
        return {
            "rule": "standard_error",
            "se_target": self.se_target,
            "min_length": self.min_length,
            "max_length": self.max_length,
        }
