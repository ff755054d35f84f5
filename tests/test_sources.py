"""Sources: folder of sets, MVImgNet (with our COLMAP reader), video through PyAV."""

import numpy as np
import pytest
from fixtures_data import write_folder_sets
from packload import mvic_module

sources = mvic_module("sources")
folder = mvic_module("sources.folder")
mvimgnet = mvic_module("sources.mvimgnet")
colmap = mvic_module("sources.colmap")
loading = mvic_module("loading")
sample_data = mvic_module("sources.sample")


@pytest.fixture(scope="module")
def sample_root():
    return sample_data.ensure_sample_data()


def test_folder_sets_are_naturally_sorted(tmp_path):
    root = write_folder_sets(tmp_path, ["mug_2", "mug_10", "mug_1"], frames=12)
    sets, skipped = folder.load_folder_sets(root)
    assert [s.name for s in sets] == ["mug_1", "mug_2", "mug_10"]
    assert [f.path.name for f in sets[0].frames][:3] == ["frame1.jpg", "frame2.jpg", "frame3.jpg"]
    assert sets[0].frames[-1].path.name == "frame12.jpg" and skipped == []


def test_mvimgnet_categories_poses_and_unregistered_frames(sample_root):
    sets, skipped = mvimgnet.load_mvimgnet_sets(sample_root)
    assert skipped == []
    assert [s.category for s in sets] == ["ball", "ball", "box", "box", "can", "can"]  # ids 7, 23, 101 (CRLF file)
    assert b"\r\n" in (sample_root / "mvimgnet_category.txt").read_bytes()
    first = sets[0]
    assert first.has_poses and first.frames[5].pose is None  # the unregistered frame
    assert sum(f.pose is not None for f in first.frames) == len(first.frames) - 1


def test_colmap_round_trip(tmp_path):
    pose = sample_data.look_at_pose(np.array([1.0, 2.0, 3.0]))
    colmap.write_cameras_bin(tmp_path / "cameras.bin", [colmap.ColmapCamera(1, 4, 640, 480, tuple(range(8)))])
    colmap.write_images_bin(tmp_path / "images.bin", [(1, "a.jpg", pose, 1)])
    read = colmap.read_model(tmp_path)
    assert np.allclose(read["a.jpg"].center, [1.0, 2.0, 3.0])
    assert colmap.read_cameras_bin(tmp_path / "cameras.bin")[1].params == tuple(float(v) for v in range(8))


def test_auto_detects_the_layout(tmp_path, sample_root):
    assert sources.discover_sets("auto", sample_root)[2] == "mvimgnet"
    assert sources.discover_sets("auto", write_folder_sets(tmp_path, ["a"]))[2] == "folder"


def test_sample_source_chooses_posed_views(sample_root):
    result = loading.load_multiview_sets("sample", "", views=4)
    assert len(result.sets) == 6 and all(s.selection == "pose" and len(s.angles) == 4 for s in result.sets)
    assert result.root == "embedded sample"


def test_video_source_decodes_frames_with_pyav(tmp_path):
    import av

    video = tmp_path / "turntable.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:, : 2 * i + 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    result = loading.load_multiview_sets("video", video, views=4, cache_dir=tmp_path / "cache")
    (mv_set,) = result.sets
    assert mv_set.source == "video" and len(mv_set.frames) == 30 and mv_set.selection == "frame_order"
    assert mv_set.chosen == [0, 7, 14, 22]
    # Decoded once: a second load reuses the cached frames.
    cached = sorted((tmp_path / "cache").rglob("*.jpg"))
    loading.load_multiview_sets("video", video, views=4, cache_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache").rglob("*.jpg")) == cached
