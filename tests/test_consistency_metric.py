"""The consistency metric itself, validated on renders of new scenes (tests/consistency_scenes.py):

    true sets      4 views of one scene, 60-90 degrees apart          -> high consistency
    mixed sets     4 views of 4 different scenes                      -> low consistency
    repeated sets  one view x4, 1-3 px shifts, brightness jitter, noise -> duplicates found, consistency 0

Thresholds are fixed here (issue 12): ROC AUC true vs mixed >= 0.95; duplicate recall >= 0.95 on the
repeated sets' panel pairs with <= 5% of true sets flagged. Run with -s to see the measured numbers.
"""

from itertools import combinations

import consistency_scenes as scenes
import numpy as np
import pytest
from packload import mvic_module

consistency = mvic_module("consistency")
score_module = mvic_module("consistency.score")
types = mvic_module("consistency.types")
layout = mvic_module("layout")

SCENES = 20
MIN_AUC = 0.95
MIN_DUPLICATE_RECALL = 0.95
MAX_TRUE_SETS_FLAGGED = 0.05


def roc_auc(positives, negatives) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / (n m))."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


@pytest.fixture(scope="module")
def rendered():
    return [scenes.true_set(seed) for seed in range(SCENES)]


@pytest.fixture(scope="module")
def scored(rendered):
    views = [v for v, _ in rendered]
    true = [consistency.score_views(v) for v in views]
    mixed = [consistency.score_views(scenes.mixed_set(views, start)) for start in range(SCENES)]
    repeated = [
        consistency.score_views(scenes.repeat_view(views[s][k], 4, seed=100 * s + k))
        for s in range(SCENES)
        for k in (0, 2)
    ]
    return {"true": true, "mixed": mixed, "repeated": repeated}


def test_true_sets_score_above_mixed_sets(scored):
    true = [s.consistency for s in scored["true"]]
    mixed = [s.consistency for s in scored["mixed"]]
    auc = roc_auc(true, mixed)
    print(
        f"\n[consistency] ROC AUC true vs mixed = {auc:.3f} ({len(true)} + {len(mixed)} sets); "
        f"true median {np.median(true):.2f} (min {min(true):.2f}), "
        f"mixed median {np.median(mixed):.2f} (max {max(mixed):.2f})"
    )
    assert auc >= MIN_AUC
    assert all(types.FLAG_DISAGREE in s.flags for s in scored["mixed"] if s.consistency < 0.25)
    assert all(0.0 <= v <= 1.0 for v in true + mixed)


def test_repeated_views_are_found_and_true_sets_are_not_flagged(scored):
    duplicate_pairs = [p.duplicate for s in scored["repeated"] for p in s.pairs]
    recall = float(np.mean(duplicate_pairs))
    sets_found = float(np.mean([s.duplicate_pairs == 6 for s in scored["repeated"]]))
    flagged = float(np.mean([s.duplicate_pairs > 0 for s in scored["true"]]))
    print(
        f"\n[consistency] duplicate recall {recall:.3f} over {len(duplicate_pairs)} repeated panel pairs "
        f"({sets_found:.3f} of {len(scored['repeated'])} repeated sets fully found); "
        f"true sets flagged {flagged:.3f} of {len(scored['true'])}"
    )
    assert recall >= MIN_DUPLICATE_RECALL
    assert flagged <= MAX_TRUE_SETS_FLAGGED
    # Four copies of one view are not "one object from several angles", however well they match.
    assert all(s.consistency == 0.0 and s.distinct_views == 1 for s in scored["repeated"] if s.duplicate_pairs == 6)
    assert all(types.FLAG_DUPLICATES in s.flags for s in scored["repeated"] if s.duplicate_pairs)


def test_viewpoint_spread_follows_the_cameras(rendered, scored):
    errors = []
    for (views, poses), result in zip(rendered, scored["true"]):
        for pair in result.pairs:
            if pair.rotation_source == "essential" and pair.agreement >= 0.25:
                errors.append(abs(pair.rotation_deg - score_module.pose_rotation_deg(poses[pair.a], poses[pair.b])))
    print(
        f"\n[consistency] essential-matrix rotation vs truth: median error {np.median(errors):.1f} deg "
        f"over {len(errors)} agreeing pairs (assumed focal)"
    )
    assert len(errors) >= SCENES and np.median(errors) <= 15.0
    assert not any(types.FLAG_TOO_CLOSE in s.flags for s in scored["true"])
    # Views only 4-8 degrees apart: agreeing, not copies, but too close together.
    close = [consistency.score_views(scenes.true_set(seed, step_range=(4.0, 8.0))[0]) for seed in range(3)]
    assert all(types.FLAG_TOO_CLOSE in s.flags and s.spread_deg["min"] < 15 for s in close)
    assert max(s.consistency for s in close) < min(s.consistency for s in scored["true"][:3] if s.consistency > 0.6)


def test_known_poses_give_the_spread_exactly(rendered):
    views, poses = rendered[0]
    result = consistency.score_views(views, poses=poses)
    for pair in result.pairs:
        assert pair.rotation_source == "poses"
        assert pair.rotation_deg == pytest.approx(score_module.pose_rotation_deg(poses[pair.a], poses[pair.b]))
    assert result.spread_deg["min"] >= 55.0


def test_scores_are_deterministic(rendered):
    views = rendered[1][0]
    first, second = consistency.score_views(views).to_dict(), consistency.score_views(views).to_dict()
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def _composite(views, rows, cols, divider=0):
    side = views[0].shape[0]
    return layout.compose(views[: rows * cols], layout.CompositeLayout(rows, cols, side, side, divider))


def test_grid_validity_seams_bleeding_panel_count_blank(rendered):
    views = [v for vs, _ in rendered[:2] for v in vs]
    good = consistency.score_composite(_composite(views, 2, 2), 2, 2)
    assert good.grid.flags == [] and (good.grid.detected_rows, good.grid.detected_cols) == (2, 2)
    assert all(share > 0.6 for share in good.grid.seam_share)
    with_divider = consistency.score_composite(_composite(views, 2, 2, divider=8), 2, 2, divider_width=8)
    assert with_divider.grid.flags == []
    # One picture cut into four: content continues across both split lines.
    one_picture = scenes.render_scene(scenes.random_scene(77), scenes.orbit_pose(30, 25, 4.0), size=768)
    bled = consistency.score_composite(one_picture, 2, 2)
    assert types.FLAG_BLEEDING in bled.flags and min(bled.grid.bleed_share) > 0.3
    # A 2x3 composite scored as 2x2: the seams show three columns.
    wide = consistency.score_composite(_composite(views, 2, 3), 2, 2)
    assert types.FLAG_PANEL_COUNT in wide.flags and wide.grid.detected_cols == 3
    blank = list(views[:4])
    blank[3] = np.full_like(blank[3], 128)
    result = consistency.score_composite(_composite(blank, 2, 2), 2, 2)
    assert types.FLAG_BLANK in result.flags and result.blank_panels == [3]


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="at least 2 views"):
        consistency.score_views([np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(ValueError, match="does not split into 2 rows x 3 cols"):
        consistency.score_composite(np.zeros((100, 100, 3), np.uint8), 2, 3)
    with pytest.raises(ValueError, match="at least 32 px"):
        consistency.score_views([np.zeros((16, 16, 3), np.uint8)] * 2)


def test_flat_and_featureless_views_score_zero_without_errors():
    flat = [np.full((128, 128, 3), value, np.uint8) for value in (10, 200, 90)]
    result = consistency.score_views(flat)
    assert result.consistency == 0.0 and all(p.inliers == 0 and not p.duplicate for p in result.pairs)
    assert result.blank_panels == [0, 1, 2] and types.FLAG_BLANK in result.flags
    assert len(result.pairs) == len(list(combinations(range(3), 2)))
