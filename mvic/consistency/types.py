"""What the consistency stage takes and gives: settings, per-pair results, the grid check, the set score."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Flags a score can carry (stable strings: the CLI JSON, the node and the hygiene filters use them).
FLAG_DUPLICATES = "duplicate_views"  # two or more panels show the same view
FLAG_TOO_CLOSE = "views_too_close"  # agreeing panels whose viewpoints are only a few degrees apart
FLAG_DISAGREE = "views_disagree"  # the panels do not look like one object from several angles
FLAG_PANEL_ALONE = "panel_disagrees"  # one panel agrees with none of the others (see `lonely_panels`)
FLAG_BLEEDING = "bleeding"  # content continues across a split line: panels are not separate views
FLAG_PANEL_COUNT = "panel_count"  # seams show a different grid than the layout
FLAG_BLANK = "blank_panel"  # a panel without content


@dataclass(frozen=True)
class ConsistencySettings:
    """Every threshold of the metric. The defaults are what the validation tests measure."""

    analysis_size: int = 256  # panels are scored at this longest side (SIFT upsamples x2 inside)
    tilts: tuple[float, ...] = (1.0, 1.5, 2.2, 3.2, 4.5)  # simulated horizontal foreshortening (ASIFT-style)
    contrast_threshold: float = 0.01  # SIFT: low, synthetic and generated panels are smooth
    ratio: float = 0.8  # Lowe's ratio test (second neighbour taken from another image location)
    ransac_threshold: float = 0.67  # px at analysis_size (about 1 px at 384)
    chance_inliers: float = 12.0  # fundamental-matrix inliers that unrelated panels reach by chance
    inlier_scale: float = 15.0  # inliers above chance for agreement 1 - 1/e
    focal_factor: float = 1.2  # assumed focal length / longest side, for the essential matrix
    too_close_deg: float = 15.0
    phash_max_distance: int = 16  # of 63 DCT bits
    ssim_min: float = 0.77  # after aligning by phase correlation
    lonely_agreement: float = 0.15
    disagree_below: float = 0.25


@dataclass
class PairResult:
    """Panels `a` and `b` (0-based, reading order)."""

    a: int
    b: int
    matches: int = 0  # putative one-to-one matches after the ratio test
    inliers: int = 0  # of the fundamental matrix
    agreement: float = 0.0  # 0-1 from the inliers above chance
    rotation_deg: float | None = None  # relative camera rotation (essential matrix or known poses)
    rotation_source: str = ""  # "essential" or "poses"
    phash_distance: int = 0
    ssim: float = 0.0
    duplicate: bool = False

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["inlier_ratio"] = round(self.inlier_ratio, 4)
        for key in ("agreement", "ssim"):
            out[key] = round(out[key], 4)
        if self.rotation_deg is not None:
            out["rotation_deg"] = round(self.rotation_deg, 2)
        return out


@dataclass
class GridCheck:
    """Whether a composite really is rows x cols separate panels."""

    rows: int
    cols: int
    # Per split line (vertical lines first), over its segments with content; None: nothing to judge.
    seam_share: list[float] = field(default_factory=list)  # share that jumps across the line (a seam)
    bleed_share: list[float] = field(default_factory=list)  # share where content continues across it
    detected_rows: int = 0
    detected_cols: int = 0
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("seam_share", "bleed_share"):
            out[key] = [None if v != v else round(v, 3) for v in out[key]]  # NaN is not JSON
        return out


@dataclass
class ConsistencyScore:
    """One set of views (a composite's panels, or views given one by one)."""

    consistency: float  # 0-1: one object seen from several angles
    agreement: float  # mean geometric agreement along the strongest chain of distinct views
    distinct_views: int  # panels left after merging duplicates
    panels: int
    pairs: list[PairResult] = field(default_factory=list)
    lonely_panels: list[int] = field(default_factory=list)
    blank_panels: list[int] = field(default_factory=list)
    spread_deg: dict = field(default_factory=dict)  # min / median / max relative rotation of agreeing pairs
    grid: GridCheck | None = None
    learned_similarity: float | None = None  # mean cosine similarity of learned features, when configured
    learned_note: str = ""
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def duplicate_pairs(self) -> int:
        return sum(1 for pair in self.pairs if pair.duplicate)

    def to_dict(self) -> dict:
        return {
            "consistency": round(self.consistency, 4),
            "agreement": round(self.agreement, 4),
            "duplicate_pairs": self.duplicate_pairs,
            "distinct_views": self.distinct_views,
            "panels": self.panels,
            "lonely_panels": self.lonely_panels,
            "blank_panels": self.blank_panels,
            "spread_deg": {k: round(v, 2) for k, v in self.spread_deg.items()},
            "flags": self.flags,
            "grid": self.grid.to_dict() if self.grid else None,
            "learned_similarity": None if self.learned_similarity is None else round(self.learned_similarity, 4),
            "learned_note": self.learned_note,
            "pairs": [pair.to_dict() for pair in self.pairs],
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        flags = f" [{', '.join(self.flags)}]" if self.flags else ""
        return f"consistency {self.consistency:.2f}, {self.duplicate_pairs} duplicate pair(s){flags}"
