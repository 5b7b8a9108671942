"""Stable seeds: a blake2b digest of the parts, so seeds do not depend on Python's hash randomization."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the string forms of ``parts``."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng(*parts: object) -> np.random.Generator:
    """A PCG64 generator seeded by ``parts``."""
    return np.random.default_rng(stable_seed(*parts))
