"""Rank sampled candidates (one composite per seed) by their consistency score."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .score import DEFAULT_SETTINGS, score_composite
from .types import ConsistencyScore, ConsistencySettings


@dataclass
class RankedCandidate:
    index: int  # position in the order sampled
    seed: int
    score: ConsistencyScore

    def to_dict(self, rank: int) -> dict:
        return {
            "rank": rank,
            "seed": self.seed,
            "consistency": round(self.score.consistency, 4),
            "duplicate_pairs": self.score.duplicate_pairs,
            "flags": self.score.flags,
        }


def rank_candidates(
    composites: list[np.ndarray],
    seeds: list[int],
    rows: int,
    cols: int,
    settings: ConsistencySettings = DEFAULT_SETTINGS,
) -> list[RankedCandidate]:
    """Best first; equal scores keep the sampling order (the lower seed first)."""
    scored = [
        RankedCandidate(i, seed, score_composite(image, rows, cols, settings=settings))
        for i, (image, seed) in enumerate(zip(composites, seeds))
    ]
    return sorted(scored, key=lambda c: (-c.score.consistency, c.index))


def ranking_json(ranked: list[RankedCandidate]) -> str:
    return json.dumps([candidate.to_dict(rank) for rank, candidate in enumerate(ranked, start=1)])
