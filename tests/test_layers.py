"""The layers: loop versions, finite differences, and Caffe's pooling rules by hand."""

import numpy as np
import pytest
from conftest import max_rel_error, numeric_gradient

from refstyle.nn import layers as L
from refstyle.backend import to_numpy

rng = np.random.default_rng(1234)


def _fd_check(forward, backward, x, h=1e-6):
    """Check backward(dy) against central differences of sum(forward(x) * dy) (float64)."""
    y, cache = forward(x)
    dy = rng.standard_normal(y.shape)
    analytic = backward(dy, cache)
    numeric = numeric_gradient(lambda z: float(np.sum(forward(z)[0] * dy)), x, h)
    return max_rel_error(analytic, numeric)


# --- convolution -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 2, 4, 4), (1, 1, 1, 1), (1, 4, 1, 6)])
def test_conv_matches_loop_version(shape):
    x = rng.standard_normal(shape)
    W = rng.standard_normal((5, shape[1], 3, 3))
    b = rng.standard_normal(5)
    y, cache = L.conv_forward(x, W, b)
    assert max_rel_error(y, L.conv_forward_naive(x, W, b)) < 1e-12
    dy = rng.standard_normal(y.shape)
    assert max_rel_error(L.conv_backward(dy, cache), L.conv_backward_naive(dy, W, x.shape)) < 1e-12


def test_conv_is_a_cross_correlation_with_zero_padding():
    # A single filter that picks the right-hand neighbour: y[i, j] = x[i, j+1], 0 past the edge.
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    W = np.zeros((1, 1, 3, 3))
    W[0, 0, 1, 2] = 1.0
    y, _ = L.conv_forward(x, W, np.array([0.5]))
    expected = np.array([[1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]]) + 0.5
    np.testing.assert_array_equal(y[0, 0], expected)


def test_conv_backward_finite_differences():
    x = rng.standard_normal((1, 3, 5, 6))
    W = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    assert _fd_check(lambda z: L.conv_forward(z, W, b), L.conv_backward, x) < 1e-8


# --- ReLU --------------------------------------------------------------------


def test_relu_finite_differences():
    x = rng.standard_normal((1, 3, 4, 5))
    x[np.abs(x) < 0.05] = 0.3  # keep every point away from the kink
    assert _fd_check(L.relu_forward, L.relu_backward, x) < 1e-8


def test_relu_gradient_is_zero_at_exactly_zero():
    x = np.array([-1.0, 0.0, 2.0]).reshape(1, 1, 1, 3)
    y, cache = L.relu_forward(x)
    np.testing.assert_array_equal(L.relu_backward(np.ones_like(x), cache).ravel(), [0.0, 0.0, 1.0])


# --- pooling: Caffe's rules ------------------------------------------------------


@pytest.mark.parametrize("n, expected", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (7, 4), (224, 112), (225, 113)])
def test_pool_output_size_is_ceil_mode(n, expected):
    assert L.pool_output_size(n) == expected


X57 = np.arange(35, dtype=np.float64).reshape(1, 1, 5, 7)


def test_avg_pool_5x7_by_hand():
    y, cache = L.pool_forward(X57, "avg")
    # Edge windows average only their in-image cells: 2 cells on the last column and
    # last row, 1 cell in the corner.
    expected = [
        [4.0, 6.0, 8.0, 9.5],  # (0+1+7+8)/4 ... (6+13)/2
        [18.0, 20.0, 22.0, 23.5],
        [28.5, 30.5, 32.5, 34.0],  # (28+29)/2 ... 34/1
    ]
    np.testing.assert_array_equal(y[0, 0], expected)
    dx = L.pool_backward(np.ones((1, 1, 3, 4)), cache)
    expected_dx = np.full((5, 7), 0.25)
    expected_dx[:4, 6] = 0.5
    expected_dx[4, :6] = 0.5
    expected_dx[4, 6] = 1.0
    np.testing.assert_array_equal(dx[0, 0], expected_dx)


def test_max_pool_5x7_by_hand():
    y, cache = L.pool_forward(X57, "max")
    expected = [[8, 10, 12, 13], [22, 24, 26, 27], [29, 31, 33, 34]]
    np.testing.assert_array_equal(y[0, 0], expected)
    dy = np.arange(1, 13, dtype=np.float64).reshape(1, 1, 3, 4)
    dx = L.pool_backward(dy, cache)
    expected_dx = np.zeros((5, 7))
    for (i, j), g in zip([(1, 1), (1, 3), (1, 5), (1, 6), (3, 1), (3, 3), (3, 5), (3, 6), (4, 1), (4, 3), (4, 5), (4, 6)], range(1, 13)):
        expected_dx[i, j] = g
    np.testing.assert_array_equal(dx[0, 0], expected_dx)


def test_max_pool_routes_ties_to_the_first_maximum_in_row_major_order():
    x = np.array([[5.0, 5.0, 1.0, 3.0], [5.0, 5.0, 3.0, 2.0]]).reshape(1, 1, 2, 4)
    y, cache = L.pool_forward(x, "max")
    np.testing.assert_array_equal(y.ravel(), [5.0, 3.0])
    dx = L.pool_backward(np.array([1.0, 2.0]).reshape(1, 1, 1, 2), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode", L.POOLINGS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 3), (2, 3), (3, 3), (4, 4), (5, 7), (6, 9)])
def test_pool_matches_loop_version(mode, hw):
    x = rng.standard_normal((2, 3) + hw)
    y, cache = L.pool_forward(x, mode)
    np.testing.assert_allclose(y, L.pool_forward_naive(x, mode), rtol=1e-14)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(L.pool_backward(dy, cache), L.pool_backward_naive(dy, x, mode), rtol=1e-14)


@pytest.mark.parametrize("mode", L.POOLINGS)
def test_pool_finite_differences(mode):
    x = rng.standard_normal((1, 2, 5, 7))
    assert _fd_check(lambda z: L.pool_forward(z, mode), L.pool_backward, x) < 1e-8


def test_unknown_pooling_mode():
    with pytest.raises(ValueError, match="pooling mode"):
        L.pool_forward(X57, "min")


# --- every layer on every backend, float32 and float64 ---------------------------


@pytest.mark.parametrize("layer", ["conv", "relu", "avg", "max"])
def test_layers_keep_dtype_and_backend(xp, dtype, layer):
    x64 = rng.standard_normal((1, 3, 5, 7))
    W64, b64 = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    x, W, b = (xp.asarray(a, dtype=dtype) for a in (x64, W64, b64))
    if layer == "conv":
        forward, ref = (lambda z: L.conv_forward(z, W, b)), (lambda z: L.conv_forward(z, W64, b64))
        backward = L.conv_backward
    elif layer == "relu":
        forward = ref = L.relu_forward
        backward = L.relu_backward
    else:
        forward = ref = lambda z, m=layer: L.pool_forward(z, m)
        backward = L.pool_backward
    y, cache = forward(x)
    dy = xp.ones_like(y)
    dx = backward(dy, cache)
    for a in (y, dx):
        assert a.dtype == dtype
        assert type(a) is type(x)
    # The backend and dtype compute the same numbers as NumPy float64.
    y_ref, cache_ref = ref(x64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert max_rel_error(to_numpy(y), y_ref) < tol
    assert max_rel_error(to_numpy(dx), backward(np.ones_like(y_ref), cache_ref)) < tol
    # Inputs are never written into.
    np.testing.assert_array_equal(to_numpy(x), x64.astype(dtype))
