"""Acceptance 3 (split is the exact inverse of compose) and image decoding."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packload import mvic_module

layout_mod = mvic_module("layout")
images = mvic_module("images")
from PIL import Image  # noqa: E402

CompositeLayout = layout_mod.CompositeLayout


@st.composite
def layouts_and_sources(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pw, ph = 16 * draw(st.integers(1, 6)), 16 * draw(st.integers(1, 6))
    divider = draw(st.integers(0, max(0, min(pw, ph) // 2 - 1)))
    layout = CompositeLayout(rows, cols, pw, ph, divider, tuple(draw(st.tuples(*[st.integers(0, 255)] * 3))))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    sources = [
        Image.fromarray(rng.integers(0, 256, (int(rng.integers(5, 200)), int(rng.integers(5, 200)), 3), dtype=np.uint8))
        for _ in range(layout.count)
    ]
    return layout, sources, draw(st.sampled_from(layout_mod.FIT_MODES))


@settings(max_examples=60, deadline=None)
@given(layouts_and_sources())
def test_split_of_compose_returns_the_fitted_panels_bit_for_bit(case):
    layout, sources, fit = case
    pad = (12, 200, 7)
    fitted = [np.asarray(layout_mod.fit_panel(s, layout.panel_width, layout.panel_height, fit, pad)) for s in sources]
    composite = layout_mod.compose(fitted, layout)
    assert composite.shape == (layout.height, layout.width, 3)
    panels = layout_mod.split(composite, layout.rows, layout.cols)
    color = np.asarray(layout.divider_color, np.uint8)
    for index, (got, want) in enumerate(zip(panels, fitted)):
        expected = want.copy()
        expected[layout.divider_mask(index)] = color  # the divider is part of the panel
        assert np.array_equal(got, expected)
        if layout.divider_width == 0:
            assert np.array_equal(got, want)


def test_pad_letterboxes_with_the_pad_colour_and_keeps_aspect():
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    panel = np.asarray(layout_mod.fit_panel(wide, 64, 64, "pad", (0, 0, 255)))
    assert (panel[0, 32] == [0, 0, 255]).all() and (panel[32, 32] == [255, 0, 0]).all()
    assert (panel[:, :, 0] > 128).sum(axis=0)[32] == 32  # 64 * 100/200 rows of picture


def test_crop_takes_the_centre():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255
    panel = np.asarray(layout_mod.fit_panel(Image.fromarray(image), 32, 32, "crop"))
    assert panel.min() > 200  # only the white centre third survives


def test_dividers_cover_inner_edges_only():
    layout = CompositeLayout(2, 2, 32, 32, divider_width=4)
    top_left = layout.divider_mask(0)
    assert top_left[:, -2:].all() and top_left[-2:, :].all()
    assert not top_left[5:-5, :2].any() and not top_left[:2, 5:-5].any()  # outer edges untouched
    bottom_right = layout.divider_mask(3)
    assert bottom_right[:, :2].all() and bottom_right[:2, :].all() and not bottom_right[5:, 5:].any()


@pytest.mark.parametrize("width", [0, 8, 24, 500])
def test_panel_size_must_be_a_multiple_of_16(width):
    with pytest.raises(ValueError, match="multiples of 16"):
        CompositeLayout(2, 2, width, 512)


def test_split_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="does not split"):
        layout_mod.split(np.zeros((100, 64, 3), np.uint8), 3, 2)


# --- decoding ---------------------------------------------------------------


def _saved(image, fmt="PNG", **kw):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    buffer.seek(0)
    return buffer


def test_every_pil_mode_becomes_correct_rgb(tmp_path):
    cases = {}
    cases["L"] = (Image.new("L", (4, 4), 100), (100, 100, 100))
    cases["LA"] = (Image.new("LA", (4, 4), (100, 0)), (255, 255, 255))  # fully transparent -> background
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    cases["RGBA"] = (rgba, (10, 20, 30))
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 50, 25] + [0] * 762)
    cases["P"] = (palette, (200, 50, 25))
    cases["CMYK"] = (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0))
    cases["I;16"] = (Image.fromarray(np.full((4, 4), 65535, np.uint16)), (255, 255, 255))
    for mode, (image, rgb) in cases.items():
        path = tmp_path / f"{mode.replace(';', '_')}.{'tif' if mode == 'CMYK' else 'png'}"
        image.save(path)
        loaded = images.load_rgb(path)
        assert loaded.mode == "RGB", mode
        assert tuple(np.asarray(loaded)[1, 1]) == rgb, mode
    # Half-grey 16-bit is scaled, not clipped to white.
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "half.png")
    assert abs(int(np.asarray(images.load_rgb(tmp_path / "half.png"))[0, 0, 0]) - 128) <= 1


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 30))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    image.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    loaded = images.load_rgb(tmp_path / "rot.jpg")
    assert loaded.size == (30, 60)
    assert np.asarray(loaded)[2, 15, 2] > 200  # the left strip is now on top


def test_jpeg_draft_decodes_reduced_but_large_enough(tmp_path):
    Image.new("RGB", (1920, 1080), (1, 2, 3)).save(tmp_path / "big.jpg")
    loaded = images.load_rgb(tmp_path / "big.jpg", min_size=(256, 256))
    assert loaded.size[1] >= 256 and loaded.size[0] < 1920
