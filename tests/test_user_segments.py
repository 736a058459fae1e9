"""User segments: masks_to_labels, check_label_map, Explainer(labels=... / segmenter=callable),
and the CLI's --labels / --masks round trip on the embedded shapes model."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr import Explainer, Explanation, check_label_map, masks_to_labels
from mllm_attr.adapters.callable import CallableAdapter
from mllm_attr.cli import main
from mllm_attr.testing.fake import make_fake_adapter

# --------------------------------------------------------------------------- masks_to_labels


def _box(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


def test_masks_overlap_goes_to_the_earlier_mask_and_the_rest_is_the_last_region():
    a = _box((4, 4), (0, 2), (0, 3))  # rows 0-1, cols 0-2
    b = _box((4, 4), (1, 3), (2, 4))  # rows 1-2, cols 2-3: overlaps a at (1, 2)
    labels = masks_to_labels([a, b])
    assert labels.dtype == np.int32 and labels.shape == (4, 4)
    assert labels.tolist() == [
        [0, 0, 0, 2],
        [0, 0, 0, 1],  # (1, 2) is in both masks: the earlier one (0) wins
        [2, 2, 1, 1],
        [2, 2, 2, 2],  # uncovered pixels: one extra region, the last label
    ]
    # Reversed order: the overlap pixel goes to the other mask.
    assert masks_to_labels([b, a])[1, 2] == 0 and masks_to_labels([b, a])[0, 0] == 1


def test_masks_that_cover_everything_give_no_remainder_region():
    left = _box((3, 4), (0, 3), (0, 2))
    labels = masks_to_labels([left, ~left])
    assert labels.tolist() == [[0, 0, 1, 1]] * 3 and labels.max() == 1


def test_masks_as_one_array_and_as_0_1_numbers():
    stack = np.zeros((2, 3, 3), np.uint8)
    stack[0, 0] = 1
    stack[1, 2] = 1
    labels = masks_to_labels(stack)
    assert labels.tolist() == [[0, 0, 0], [2, 2, 2], [1, 1, 1]]
    assert masks_to_labels(list(stack.astype(np.float32))).tolist() == labels.tolist()
    assert masks_to_labels([stack[0]], shape=(3, 3)).tolist() == [[0, 0, 0], [1, 1, 1], [1, 1, 1]]


def test_empty_mask_is_named():
    a = _box((4, 4), (0, 2), (0, 4))
    with pytest.raises(ValueError, match=r"mask 1 is empty"):
        masks_to_labels([a, np.zeros((4, 4), bool)])
    inside = _box((4, 4), (0, 1), (0, 1))
    with pytest.raises(ValueError, match=r"mask 2 is entirely covered by earlier mask\(s\) \[0\]"):
        masks_to_labels([a, ~a, inside])


def test_shape_mismatch_names_expected_and_got():
    with pytest.raises(ValueError, match=r"mask 1 has shape \(4, 5\); expected \(4, 4\)"):
        masks_to_labels([np.ones((4, 4), bool), np.ones((4, 5), bool)])
    with pytest.raises(ValueError, match=r"mask 0 has shape \(4, 4\); expected \(8, 8\)"):
        masks_to_labels([np.ones((4, 4), bool)], shape=(8, 8))
    with pytest.raises(ValueError, match=r"mask 0 has shape \(2, 4, 4\); expected"):
        masks_to_labels([np.ones((2, 4, 4), bool)])


def test_more_masks_than_pixels_and_other_refusals():
    with pytest.raises(ValueError, match=r"5 masks give more regions than the 2x2=4 pixels"):
        masks_to_labels(np.eye(4, dtype=bool).reshape(4, 2, 2)[[0, 1, 2, 3, 0]])
    with pytest.raises(ValueError, match="at least one mask"):
        masks_to_labels([])
    with pytest.raises(ValueError, match="single region"):
        masks_to_labels([np.ones((3, 3), bool)])
    with pytest.raises(ValueError, match=r"mask 0: expected boolean or 0/1 values; found 2"):
        masks_to_labels([np.full((3, 3), 2)])
    with pytest.raises(TypeError, match="list of boolean"):
        masks_to_labels("mask.npz")


# --------------------------------------------------------------------------- check_label_map


def test_check_label_map_keeps_contiguous_maps_and_relabels_others():
    lab = np.array([[1, 1, 0], [2, 2, 0]], dtype=np.int64)  # contiguous but not in raster order
    seg = check_label_map(lab, (2, 3))
    assert seg.labels.dtype == np.int32 and seg.labels.tolist() == lab.tolist()  # unchanged
    assert seg.method == "user-labels" and seg.n_regions == 3 and "notes" not in seg.params
    gappy = np.array([[9, 9, -4], [7, 7, -4]], dtype=np.int16)
    seg = check_label_map(gappy, (2, 3))
    assert seg.labels.tolist() == [[2, 2, 0], [1, 1, 0]]  # ascending order of the original values
    assert seg.params["relabelled"] == {"-4": 0, "7": 1, "9": 2} and "relabelled to 0..2" in seg.params["notes"][0]


def test_check_label_map_errors_name_expected_and_got():
    with pytest.raises(ValueError, match=r"expected shape \(4, 6\) \(H, W\).*6x4 explained image; got shape \(6, 4\)"):
        check_label_map(np.zeros((6, 4), int), (4, 6))
    with pytest.raises(ValueError, match=r"expected a 2-D label map of shape \(4, 6\) \(H, W\); got shape \(4, 6, 3\)"):
        check_label_map(np.zeros((4, 6, 3), int), (4, 6))
    with pytest.raises(TypeError, match=r"integer label map; got dtype float64 \(convert with"):
        check_label_map(np.zeros((4, 6)), (4, 6))
    with pytest.raises(TypeError, match="boolean array.*masks_to_labels"):
        check_label_map(np.zeros((4, 6), bool), (4, 6))
    with pytest.raises(ValueError, match="a single region"):
        check_label_map(np.full((4, 6), 3), (4, 6))
    with pytest.raises(TypeError, match="expected an integer numpy array"):
        check_label_map("labels.npy", (4, 6))


# --------------------------------------------------------------------------- Explainer


def _quadrants(h: int = 40, w: int = 40) -> np.ndarray:
    lab = np.zeros((h, w), np.int32)
    lab[:, w // 2 :] = 1
    lab[h // 2 :] += 2
    return lab


def test_explainer_uses_the_supplied_label_map(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    lab = _quadrants()
    expl = Explainer(adapter, labels=lab)(rgb_image, prompt="q", target="cat")
    assert np.array_equal(expl.labels, lab) and expl.n_regions == 4
    assert expl.ordering[0] == 0  # the quadrant that carries 3/4 of the weight
    s = expl.settings
    assert s["segmenter"] == "user-labels" and s["segments_supplied"] is True
    assert s["n_regions"] == 4 and s["n_regions_requested"] == 4
    # Labels that are not 0..n-1 are relabelled, with a note.
    expl = Explainer(adapter, labels=lab * 10 + 5)(rgb_image, prompt="q", target="cat")
    assert np.array_equal(expl.labels, lab) and expl.settings["segmenter_params"]["notes"]


def test_explainer_callable_segmenter(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    seen = []

    def my_segmenter(image: np.ndarray) -> np.ndarray:
        seen.append((image.shape, image.dtype))
        return _quadrants(*image.shape[:2]).astype(np.int64)

    expl = Explainer(adapter, segmenter=my_segmenter)(rgb_image, prompt="q", target="cat")
    assert seen == [((40, 40, 3), np.uint8)]
    assert np.array_equal(expl.labels, _quadrants()) and expl.n_regions == 4
    s = expl.settings
    assert s["segmenter"] == "user-callable" and s["segments_supplied"] is True
    assert "my_segmenter" in s["segmenter_name"]
    with pytest.raises(ValueError, match=r"segmenter .*my_bad.*expected shape \(40, 40\)"):

        def my_bad(image):
            return np.zeros((10, 10), int)

        Explainer(adapter, segmenter=my_bad)(rgb_image, prompt="q")


def test_default_segmenter_is_recorded_as_not_supplied(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, prompt="q", target="cat")
    assert expl.settings["segmenter"] == "grid" and expl.settings["segments_supplied"] is False


def test_explainer_refuses_bad_segments_with_clear_errors(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    with pytest.raises(TypeError, match=r"got a numpy array of shape \(40, 40\): pass a ready label map as labels="):
        Explainer(adapter, segmenter=_quadrants())
    with pytest.raises(TypeError, match="segmenter must be a name"):
        Explainer(adapter, segmenter=3)
    with pytest.raises(ValueError, match="either labels or a callable segmenter"):
        Explainer(adapter, labels=_quadrants(), segmenter=lambda im: _quadrants())
    with pytest.raises(ValueError, match="segmenter_options do not apply"):
        Explainer(adapter, labels=_quadrants(), segmenter_options={"sigma": 1.0})
    with pytest.raises(ValueError, match="segmenter_options only apply"):
        Explainer(adapter, segmenter=lambda im: _quadrants(), segmenter_options={"sigma": 1.0})
    with pytest.raises(TypeError, match="dtype float64"):
        Explainer(adapter, labels=_quadrants().astype(float))
    with pytest.raises(ValueError, match="single region"):
        Explainer(adapter, labels=np.zeros((40, 40), int))


def test_wrong_shape_fails_before_any_model_work(rgb_image):
    calls = []

    def score(images, gen, positions):
        calls.append("score")
        return np.ones((len(images), len(positions)))

    def generate(img, prompt):
        calls.append("generate")
        return "a cat"

    adapter = CallableAdapter(score, generate)
    with pytest.raises(ValueError, match=r"labels: expected shape \(40, 40\) \(H, W\).*got shape \(40, 30\)"):
        Explainer(adapter, labels=_quadrants(40, 30))(rgb_image, prompt="q")
    assert calls == []


def test_downscaled_image_error_says_which_shape_was_expected():
    big = np.full((2100, 2100, 3), 100, np.uint8)  # more than 2048x2048 pixels: downscaled on load
    adapter = CallableAdapter(lambda im, g, p: np.ones((len(im), len(p))), lambda im, q: "a")
    with pytest.raises(
        ValueError,
        match=r"expected shape \(2048, 2048\).*got shape \(2100, 2100\)"
        r".*downscaled on load from 2100x2100 to 2048x2048",
    ):
        Explainer(adapter, labels=_quadrants(2100, 2100))(big, prompt="q")


# --------------------------------------------------------------------------- CLI round trip


@pytest.fixture(scope="module")
def example():
    from mllm_attr.assets import example_image_path
    from mllm_attr.image import load_image

    path = example_image_path()
    return path, load_image(str(path)).array


def _explain(tmp_path, image_path, *extra, name="out"):
    out = tmp_path / name
    code = main(
        [
            "explain",
            "--image",
            str(image_path),
            "--prompt",
            "What color is the circle?",
            "--target-index",
            "0",
            "--max-new-tokens",
            "2",
            "--out",
            str(out),
            "-q",
            *extra,
        ]
    )
    return code, out


def test_cli_labels_file_round_trip(tmp_path, example, capsys):
    path, arr = example
    h, w = arr.shape[:2]
    lab = np.zeros((h, w), np.int32)
    lab[:, w // 2 :] = 1
    lab[h // 3 :, :] += 2  # 4 regions 0..3
    np.save(tmp_path / "labels.npy", lab)
    code, out = _explain(tmp_path, path, "--labels", str(tmp_path / "labels.npy"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "regions:          4 (supplied by --labels)" in captured.out
    expl = Explanation.load(out)
    assert np.array_equal(expl.labels, lab) and expl.n_regions == 4
    assert expl.settings["segmenter"] == "user-labels" and expl.settings["segments_supplied"] is True
    assert expl.settings["segments_source"] == {"labels_file": str(tmp_path / "labels.npy")}


def test_cli_masks_file_round_trip(tmp_path, example, capsys):
    path, arr = example
    h, w = arr.shape[:2]
    top = _box((h, w), (0, h // 2), (0, w))
    left = _box((h, w), (0, h), (0, w // 3))  # overlaps `top`: the overlap stays in region 0
    np.savez(tmp_path / "masks.npz", top=top, left=left.astype(np.uint8))
    code, out = _explain(tmp_path, path, "--masks", str(tmp_path / "masks.npz"))
    assert code == 0, capsys.readouterr().err
    expl = Explanation.load(out)
    expected = masks_to_labels([top, left])
    assert np.array_equal(expl.labels, expected) and expl.n_regions == 3  # + the uncovered remainder
    assert expl.settings["segmenter"] == "user-labels"
    assert expl.settings["segments_source"]["n_masks"] == 2 and expl.settings["segments_source"]["remainder_region"]
    # One [N, H, W] array gives the same regions.
    np.savez(tmp_path / "stack.npz", np.stack([top, left]))
    code, out2 = _explain(tmp_path, path, "--masks", str(tmp_path / "stack.npz"), name="out2")
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(Explanation.load(out2).labels, expected)
