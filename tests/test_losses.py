"""The paper's losses, the objective, and the conventions of other implementations."""

import numpy as np
import pytest
from conftest import max_rel_error, numeric_gradient

import refstyle
from refstyle.paper.conventions import CONVENTIONS, PAPER_STYLE_LAYERS
from refstyle.errors import RefstyleError
from refstyle.paper.gradcheck import check_gradient
from refstyle.paper.losses import blend_grams, content_loss, gram, style_loss
from refstyle.paper.objective import Objective, content_targets, style_targets

rng = np.random.default_rng(42)


def _loss_fd(loss, F, target):
    E, dF = loss(F, target)
    numeric = numeric_gradient(lambda Z: loss(Z, target)[0], F, h=1e-6)
    return max_rel_error(dF, numeric)


def test_content_loss_value_and_gradient():
    F, P = rng.random((1, 4, 3, 5)), rng.random((1, 4, 3, 5))
    L, dF = content_loss(F, P)
    assert L == pytest.approx(0.5 * np.sum((F - P) ** 2), rel=1e-14)
    assert _loss_fd(content_loss, F, P) < 1e-6
    assert content_loss(P, P)[0] == 0.0


def test_gram_matrix():
    F = rng.random((1, 3, 4, 5))
    Fm = F.reshape(3, 20)
    np.testing.assert_allclose(gram(F), [[Fm[i] @ Fm[j] for j in range(3)] for i in range(3)], rtol=1e-14)
    # a constant map c over M positions: every entry is c² M
    np.testing.assert_allclose(gram(np.full((1, 2, 3, 3), 2.0)), np.full((2, 2), 36.0))


def test_style_loss_value_and_gradient():
    N, H, W = 4, 3, 5
    M = H * W
    F, Fa = rng.random((1, N, H, W)), rng.random((1, N, 4, 6))
    A = gram(Fa)
    E, dF = style_loss(F, A)
    assert E == pytest.approx(np.sum((gram(F) - A) ** 2) / (4 * N**2 * M**2), rel=1e-13)
    assert _loss_fd(style_loss, F, A) < 1e-6
    assert style_loss(F, gram(F))[0] == 0.0
    # scale behaviour: F -> sF, A -> s²A multiplies E by s⁴ and dF by s³
    E2, dF2 = style_loss(3 * F, 9 * A)
    assert E2 == pytest.approx(81 * E, rel=1e-12)
    np.testing.assert_allclose(dF2, 27 * dF, rtol=1e-12)


def test_blended_style_targets():
    net = refstyle.VGG(refstyle.generate_weights("vgg16"), dtype="float64")
    a1, a2 = rng.standard_normal((1, 3, 12, 12)) * 40, rng.standard_normal((1, 3, 10, 14)) * 40
    A = style_targets(net, [a1, a2], ["conv1_1", "conv3_1"], blend=[0.25, 0.75])
    for name in A:
        G1, G2 = (gram(net.forward(a, [name])[0][name]) for a in (a1, a2))
        np.testing.assert_allclose(A[name], 0.25 * G1 + 0.75 * G2, rtol=1e-13)
        np.testing.assert_allclose(blend_grams([G1, G2], [0.25, 0.75]), A[name], rtol=1e-13)
    with pytest.raises(RefstyleError, match="2 style images but 1 blend"):
        style_targets(net, [a1, a2], ["conv1_1"], blend=[1.0])


def _problem(arch="vgg19", pooling="avg", seed=0, shape=(1, 3, 20, 18)):
    net = refstyle.VGG(refstyle.generate_weights(arch, seed=seed), dtype="float64", pooling=pooling)
    p = rng.standard_normal(shape) * 40
    a = rng.standard_normal((1, 3, 16, 22)) * 40
    return net, p, a


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_objective_gradient_finite_differences(pooling):
    net, p, a = _problem(pooling=pooling)
    P = content_targets(net, p, ["conv2_1", "conv4_2"])
    A = style_targets(net, [a], PAPER_STYLE_LAYERS)
    obj = Objective(net, P, A, alpha=1e-3, beta=1.0)
    x = rng.standard_normal(p.shape) * 40
    report = check_gradient(obj, x, coords=30, directions=5)
    assert report.max_rel_error < 1e-6, report.format()
    e = obj.evaluate(x)
    assert e.loss == pytest.approx(1e-3 * e.loss_content + e.loss_style, rel=1e-14)
    assert e.loss_style == pytest.approx(sum(0.2 * v for (kind, _), v in e.layer_losses.items() if kind == "style"))


def test_pure_content_and_pure_style_objectives():
    net, p, a = _problem()
    P = content_targets(net, p, ["conv3_1"])
    A = style_targets(net, [a], ["conv1_1", "conv2_1"])
    x = rng.standard_normal(p.shape) * 40
    content_only = Objective(net, P, A, alpha=1.0, beta=0.0)
    assert content_only.layers == ["conv3_1"]
    assert content_only(x)[0] == pytest.approx(content_loss(net.forward(x, ["conv3_1"])[0]["conv3_1"], P["conv3_1"])[0])
    assert content_only(p)[0] == 0.0
    style_only = Objective(net, {}, A, alpha=0.0, beta=1.0)
    assert check_gradient(style_only, x).max_rel_error < 1e-6
    with pytest.raises(RefstyleError, match="no loss term"):
        Objective(net, P, A, alpha=0.0, beta=0.0)


def _direct_loss(convention, net, p, a, x, content_layers, style_layers):
    """Each convention's loss written out the way that implementation writes it."""
    Fx = net.forward(x, content_layers + style_layers)[0]
    Fp = net.forward(p, content_layers)[0]
    Fa = net.forward(a, style_layers)[0]
    H, W = x.shape[2:]
    n = len(style_layers)
    total = 0.0
    for name in content_layers:
        d = Fx[name] - Fp[name]
        total += {
            "paper": lambda: 1e-3 * 0.5 * np.sum(d**2),
            "neural-style": lambda: 5.0 * np.mean(d**2),
            "tf-tutorial": lambda: 1e4 / len(content_layers) * np.mean(d**2),
            "keras-example": lambda: 2.5e-8 * np.sum(d**2),
            "anishathalye": lambda: 5.0 * 1.0 * (2 * (0.5 * np.sum(d**2)) / d.size),
        }.get(convention.replace("-pt-x256", "").replace("-pt", ""), lambda: 1.0 * np.mean(d**2))()
    for k, name in enumerate(style_layers):
        N = Fx[name].shape[1]
        Mx, Ma = Fx[name][0, 0].size, Fa[name][0, 0].size
        Gx, Ga = gram(Fx[name]), gram(Fa[name])
        if convention == "paper":
            total += 0.2 * np.sum((Gx - Ga) ** 2) / (4 * N**2 * Mx**2)
        elif convention.startswith("neural-style") or convention == "pytorch-tutorial":  # gram / nElement, MSE
            weight = 1e6 if convention == "pytorch-tutorial" else 100.0
            total += weight * np.mean((Gx / (N * Mx) - Ga / (N * Ma)) ** 2)
        elif convention == "tf-tutorial":  # gram / num_locations, reduce_mean, style_weight / num_style_layers
            total += 1e-2 / n * np.mean((Gx / Mx - Ga / Ma) ** 2)
        elif convention == "keras-example":  # unnormalised grams over 4 · 3² · (H·W)² of the image
            total += 1e-6 / n * np.sum((Gx - Ga) ** 2) / (4.0 * 3**2 * (H * W) ** 2)
        elif convention == "anishathalye":  # gram / (N M), 2 l2_loss / N², weights 1/n (exponent 1), × 500
            total += 500.0 / n * 2 * (0.5 * np.sum((Gx / (N * Mx) - Ga / (N * Ma)) ** 2)) / N**2
        else:  # gatys-pytorch: gram / (h w), MSELoss, weight 1e3 / N²
            total += 1e3 / N**2 * np.mean((Gx / Mx - Ga / Ma) ** 2)
    return total


@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_conventions_reproduce_each_implementation(convention):
    # an artwork of another size than the photograph: the Gram normalisation then matters
    net, p, a = _problem()
    c = CONVENTIONS[convention]
    content_layers, style_layers = ["conv4_2"], ["conv1_1", "conv2_1", "conv3_1"]
    P = content_targets(net, p, content_layers)
    A = style_targets(net, [a], style_layers, convention=convention)
    layer_weights = None if convention != "paper" else {name: 0.2 for name in style_layers}
    content_weights = {"conv4_2": 1.0} if convention == "anishathalye" else None  # its blend: relu4_2 alone
    obj = Objective(net, P, A, layer_weights=layer_weights, convention=convention, content_weights=content_weights)
    x = rng.standard_normal(p.shape) * 40
    expected = _direct_loss(convention, net, p, a, x, content_layers, style_layers)
    assert obj(x)[0] == pytest.approx(expected, rel=1e-12)
    assert check_gradient(obj, x, coords=10, directions=3).max_rel_error < 1e-6
    assert c.alpha > 0 and c.beta > 0


def test_unknown_convention():
    with pytest.raises(RefstyleError, match="unknown convention 'keras'"):
        refstyle.paper.conventions.get_convention("keras")
    with pytest.raises(RefstyleError, match="no such convention file"):
        refstyle.paper.conventions.get_convention("mine.json")


def test_gradcheck_flags_a_wrong_gradient():
    net, p, a = _problem(arch="vgg16")
    A = style_targets(net, [a], ["conv1_1", "conv2_1"])
    obj = Objective(net, {}, A, alpha=0.0, beta=1.0)

    def wrong(x):  # the ReLU mask forgotten at conv2_1 would look like this: a gradient a bit off
        loss, g = obj(x)
        return loss, g * 1.01

    x = rng.standard_normal(p.shape) * 40
    report = check_gradient(wrong, x)
    assert not report.passed(1e-6) and report.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert "FAIL" in report.format(1e-6)


def test_total_variation_value_and_gradient():
    from refstyle.paper.losses import total_variation

    x = rng.standard_normal((1, 3, 5, 7))
    L, dx = total_variation(x)
    direct = sum(
        (x[0, c, i + 1, j] - x[0, c, i, j]) ** 2 for c in range(3) for i in range(4) for j in range(7)
    ) + sum((x[0, c, i, j + 1] - x[0, c, i, j]) ** 2 for c in range(3) for i in range(5) for j in range(6))
    assert L == pytest.approx(direct, rel=1e-13)
    numeric = numeric_gradient(lambda z: total_variation(z)[0], x, h=1e-6)
    assert max_rel_error(dx, numeric) < 1e-7
    assert total_variation(np.full((1, 3, 4, 4), 7.0))[0] == 0.0


def test_objective_with_total_variation_gradient():
    net, p, a = _problem()
    P = content_targets(net, p, ["conv2_1"])
    A = style_targets(net, [a], ["conv1_1", "conv2_1"])
    x = rng.standard_normal(p.shape) * 40
    plain = Objective(net, P, A, alpha=1e-3, beta=1.0)
    smooth = Objective(net, P, A, alpha=1e-3, beta=1.0, tv_weight=0.1)
    report = check_gradient(smooth, x, coords=30, directions=5)
    assert report.max_rel_error < 1e-6, report.format()
    from refstyle.paper.losses import total_variation

    assert smooth(x)[0] == pytest.approx(plain(x)[0] + 0.1 * total_variation(x)[0], rel=1e-12)
