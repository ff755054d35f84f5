"""Acceptance 2: pose-based view selection on a realistic (uneven) capture."""

import numpy as np
from packload import mvic_module

views = mvic_module("views")
sample_data = mvic_module("sources.sample")


def lingering_capture(n=48, seed=0):
    """A phone orbit: half the frames spent on the first 40 degrees, then a fast sweep
    at a higher camera position, with position and aim noise."""
    rng = np.random.default_rng(seed)
    slow = np.linspace(0, np.radians(40), n // 2, endpoint=False)
    fast = np.linspace(np.radians(40), 2 * np.pi, n - n // 2, endpoint=False)
    azimuth = np.concatenate([slow, fast])
    elevation = np.where(np.arange(n) < n // 2, np.radians(10), np.radians(45))
    radius = 3.0 + rng.normal(0, 0.05, n)
    centers = np.stack(
        [
            radius * np.cos(elevation) * np.cos(azimuth),
            radius * np.cos(elevation) * np.sin(azimuth),
            radius * np.sin(elevation),
        ],
        axis=1,
    )
    centers += rng.normal(0, 0.05, centers.shape)
    return [sample_data.look_at_pose(c, target=rng.normal(0, 0.05, 3)) for c in centers]


def test_pose_selection_is_near_optimal_where_frame_order_is_not(capsys):
    poses = lingering_capture()
    directions = views.view_directions(poses)
    optimum = views.brute_force_best_min_angle(directions, 4)
    by_pose = views.min_pairwise_angle(directions, views.select_views_by_pose(poses, 4))
    by_order = views.min_pairwise_angle(directions, views.select_views_evenly(len(poses), 4))
    with capsys.disabled():
        print(
            f"\nmin pairwise angle, k=4: optimum {np.degrees(optimum):.1f} deg, by pose {np.degrees(by_pose):.1f} deg"
            f" ({by_pose / optimum:.1%}), frame order {np.degrees(by_order):.1f} deg ({by_order / optimum:.1%})"
        )
    assert by_pose >= 0.9 * optimum
    assert by_order < 0.5 * optimum


def test_object_centre_is_where_the_cameras_look():
    poses = lingering_capture(seed=3)
    assert np.linalg.norm(views.estimate_object_center(poses)) < 0.15


def test_selection_is_deterministic_and_in_capture_order():
    poses = lingering_capture(seed=1)
    first = views.select_views_by_pose(poses, 4)
    assert first == views.select_views_by_pose(poses, 4) == sorted(first)
    assert len(set(first)) == 4


def test_even_spacing_on_a_closed_orbit_never_pairs_first_and_last():
    assert views.select_views_evenly(25, 4) == [0, 6, 12, 18]
    assert views.select_views_evenly(3, 4) == [0, 1, 2]
    assert len(views.select_views_evenly(5, 4)) == 4


def test_view_angles_follow_the_orbit():
    poses = [
        sample_data.look_at_pose(np.array([3 * np.cos(a), 3 * np.sin(a), 0.0])) for a in np.radians([0, 90, 180, 270])
    ]
    angles = views.view_angles(poses, [0, 1, 2, 3])
    assert [round(abs(a.azimuth_deg)) for a in angles] == [0, 90, 180, 90]
    assert angles[1].azimuth_deg * angles[3].azimuth_deg < 0  # opposite sides
    assert all(abs(a.elevation_deg) < 1 for a in angles)


def test_blurred_and_duplicate_frames_are_rejected(tmp_path):
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        image = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).resize(
            (192, 192), Image.Resampling.NEAREST
        )
        if i == 2:
            image = image.filter(ImageFilter.GaussianBlur(6))
        path = tmp_path / f"{i}.png"
        image.save(path)
        paths.append(path)
    Image.open(paths[4]).save(tmp_path / "4b.png")  # an exact copy right after frame 4
    paths.insert(5, tmp_path / "4b.png")
    assert views.usable_frames(paths, False, False) == list(range(7))
    assert 2 not in views.usable_frames(paths, True, False)
    assert views.usable_frames(paths, False, True) == [0, 1, 2, 3, 4, 6]
