"""Tests of dipy_tractogen.measures.attributes."""

import numpy as np
import pytest
from nibabel.streamlines import ArraySequence

from dipy_tractogen.errors import InputError
from dipy_tractogen.measures.attributes import (
    ATTRIBUTES,
    compute_attributes,
    endpoint_distance,
    mean_curvature,
    streamline_length,
)


def _arc(radius, angle, n):
    t = np.linspace(0, angle, n)
    return np.stack([radius * np.cos(t), radius * np.sin(t), 0 * t], -1)


def test_length_all_containers():
    line = np.array([[0, 0, 0], [3, 4, 0], [3, 4, 12.0]])
    arc = _arc(10.0, np.pi, 200)
    expected = [17.0, 10 * np.pi]
    for container in ([line, arc], ArraySequence([line, arc])):
        got = streamline_length(container)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4)
    arr = np.stack([_arc(5.0, 1.0, 50), _arc(2.0, 1.0, 50)])
    np.testing.assert_allclose(streamline_length(arr), [5.0, 2.0], rtol=1e-3)
    assert streamline_length([]).shape == (0,)


def test_curvature_of_lines_and_circles():
    arr = np.stack(
        [
            _arc(5.0, np.pi, 128),
            _arc(20.0, np.pi / 2, 128),
            np.linspace([0, 0, 0], [10, 5, 2], 128),
        ]
    ).astype(np.float32)
    k = mean_curvature(arr)
    assert k.dtype == np.float32
    np.testing.assert_allclose(k, [1 / 5, 1 / 20, 0.0], rtol=0.02, atol=1e-5)
    # a list of unevenly sampled arcs is resampled first
    uneven = _arc(8.0, np.pi, 300)[np.r_[0:100:2, 100:300:7, 299]]
    np.testing.assert_allclose(mean_curvature([uneven]), [1 / 8], rtol=0.03)


def test_endpoint_distance():
    line = np.array([[0, 0, 0], [5, 5, 5], [3, 4, 0.0]])
    assert endpoint_distance([line])[0] == pytest.approx(5.0)
    arr = _arc(1.0, np.pi, 20)[None]
    assert endpoint_distance(arr)[0] == pytest.approx(2.0, rel=1e-6)


def test_compute_attributes_registry():
    arr = np.stack([_arc(4.0, np.pi, 64)]).astype(np.float32)
    out = compute_attributes(arr, ("length", "curvature"))
    assert sorted(out) == ["curvature", "length"]
    assert out["length"][0] == pytest.approx(4 * np.pi, rel=1e-3)
    assert set(ATTRIBUTES) >= {"length", "curvature", "endpoint_distance"}
    with pytest.raises(
        InputError, match="unknown streamline attribute.*'torsion'.*known: length"
    ):
        compute_attributes(arr, ["length", "torsion"])
