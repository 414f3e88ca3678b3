"""check_gradient: each probe's finite-difference error bound, its verdict, kinks (float64)."""

import numpy as np
import pytest

import refstyle
from refstyle.paper.gradcheck import check_gradient, measure_noise
from refstyle.nn.layers import pool_backward, pool_forward

EPS = np.finfo(np.float64).eps
rng = np.random.default_rng(0)
X = rng.uniform(-1, 1, (3, 6, 5))
C = rng.uniform(0.5, 2, X.shape)


def smooth(x):
    r"""f = Σ c sin(x) + Σ x⁴ / 10: smooth, with a third derivative, so truncation is there to be estimated."""
    return float(np.sum(C * np.sin(x)) + 0.1 * np.sum(x**4)), C * np.cos(x) + 0.4 * x**3


def test_a_correct_gradient_passes_with_every_bound_below_the_tolerance():
    report = check_gradient(smooth, X)
    assert report.verdict(1e-6) == "PASS" and report.passed(1e-6)
    assert report.max_rel_error < 1e-8 and report.max_rel_bound < 1e-7
    assert all(p.rel_error <= p.rel_bound and p.evaluations == 4 for p in report.probes)
    # the gradient, 2 × 6 to measure the noise, 4 per probe
    assert len(report.probes) == 30 and report.evaluations == 1 + 12 + 4 * 30
    assert report.noise == pytest.approx(EPS * abs(report.loss))  # this f's noise is below one unit of |f|
    text = report.format(1e-6)
    assert text.splitlines()[-1].startswith("PASS: 30 probes agree to") and "agrees to" in text


def test_one_coordinate_off_by_1e_3_fails_where_its_bound_is_below_1e_5():
    i = np.unravel_index(np.argmax(np.abs(smooth(X)[1])), X.shape)

    def wrong(x):
        loss, g = smooth(x)
        g = g.copy()
        g[i] *= 1 + 1e-3
        return loss, g

    report = check_gradient(wrong, X, directions=0)
    (p,) = [p for p in report.probes if p.where == tuple(int(j) for j in i)]
    assert p.rel_bound < 1e-5 and p.rel_error == pytest.approx(1e-3 / (1 + 1e-3), rel=1e-4)
    assert p.status(1e-6) == "fail" and p.verdict(1e-6).startswith("FAILS: 1.0e-03")
    assert [q.status(1e-6) for q in report.probes].count("fail") == 1
    assert report.verdict(1e-6) == "FAIL" and not report.passed(1e-6)
    assert report.summary(1e-6).startswith(f"FAIL: 1 of 25 probes disagree beyond 1e-06 and their bounds; worst x{list(p.where)}")


def _objective(style_layers, A, P=None, alpha=0.0):
    net = _objective.net
    return refstyle.Objective(net, P or {}, {n: A[n] for n in style_layers}, {n: 0.2 for n in style_layers},
                              alpha=alpha, beta=1.0)


def test_a_factor_2_on_one_layer_of_a_real_objective_fails():
    net = refstyle.VGG(refstyle.generate_weights("vgg19", widths=(4, 6, 8, 8, 8), seed=0), dtype="float64")
    _objective.net = net
    r = np.random.default_rng(1)
    p, a, x = (r.standard_normal((1, 3, 20, 20)) * 40 for _ in range(3))
    layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    P = refstyle.content_targets(net, p, ["conv4_2"])
    A = refstyle.style_targets(net, [a], layers)
    right = _objective(layers, A, P, alpha=1e-3)
    term = _objective(["conv3_1"], A)  # w_l E_l of conv3_1 alone

    def doubled(x_):  # the conv3_1 term's gradient counted twice, its loss once
        loss, g = right(x_)
        return loss, g + term(x_)[1]

    good = check_gradient(right, x, coords=5, directions=2)
    assert good.verdict(1e-6) == "PASS", good.format(1e-6)
    bad = check_gradient(doubled, x, coords=5, directions=2)
    assert bad.verdict(1e-6) == "FAIL"
    failed = [q for q in bad.probes if q.status(1e-6) == "fail"]
    assert len(failed) >= 8 and min(q.rel_error for q in failed) > 100 * max(q.rel_bound for q in failed)


def test_a_loss_of_1e5_with_derivatives_of_1e_5_passes_within_the_noise():
    def big(x):
        return 1e5 + 1e-5 * float(np.sum(np.sin(x))), 1e-5 * np.cos(x)

    report = check_gradient(big, X, coords=10, directions=0)
    # the old check, one central difference at h_0 = ε^(1/3), cried wolf: its rounding, up to
    # ε 1e5 / h_0 = 4e-6, can reach a third of a derivative of 1e-5
    h0 = report.h
    e = np.zeros_like(X)
    e[0, 0, 0] = h0
    old = (big(X + e)[0] - big(X - e)[0]) / (2 * h0)
    assert abs(old / big(X)[1][0, 0, 0] - 1) > 1e-3
    assert report.verdict(1e-6) == "PASS within the noise floor" and report.passed(1e-6)
    statuses = {p.status(1e-6) for p in report.probes}
    assert statuses == {"noise"} and 1e-3 < report.reached(1e-6) < 1e-2
    assert all(p.rel_error <= p.rel_bound < 1e-2 for p in report.probes)
    assert all(p.step == 4 * 64 * h0 and p.evaluations == 8 for p in report.probes)  # grown twice from 64 h_0
    assert "agrees within the finite-difference noise" in report.format(1e-6)
    assert "|f| is 1e+10 × the derivative" in report.format(1e-6)
    assert report.summary(1e-6).startswith("PASS within the noise floor")

    def off(x):  # 10% off: far outside the bounds, still a FAIL
        loss, g = big(x)
        return loss, 1.1 * g

    assert check_gradient(off, X, coords=10, directions=2).verdict(1e-6) == "FAIL"


def relu_sum(x):
    return float(np.sum(np.maximum(x, 0))), (x > 0).astype(np.float64)


def test_a_relu_kink_within_the_step_is_detected_and_reprobed():
    h = 1e-3
    x = np.full(8, 2.0)
    x[:2] = 0.3 * h  # the kink at 0 lies 0.3 h below: the steps h, h/2 and h/4 cross it (the stencil reaches 2h)
    report = check_gradient(relu_sum, x, coords=2, largest=2, directions=0, h=h)
    near = [p for p in report.probes if p.where in ((0,), (1,))]
    assert len(near) == 2
    for p in near:
        assert p.step == h / 8 and p.evaluations == 10 and p.numeric == pytest.approx(1.0, abs=1e-10)
        assert "a ReLU kink or max-pooling switch within 2h" in p.notes[0] and "re-probed at h = 0.00013" in p.notes[0]
    assert all(not p.notes and p.step == h for p in report.probes if p not in near)
    assert report.verdict(1e-6) == "PASS" and "2 re-probed at kinks" in report.summary(1e-6)
    # the old check, one central difference at h, saw (1.3 h − 0) / 2h = 0.65 there
    assert (relu_sum(x + h * np.eye(8)[0])[0] - relu_sum(x - h * np.eye(8)[0])[0]) / (2 * h) == pytest.approx(0.65)


def test_a_kink_at_every_step_moves_the_probe_to_another_coordinate():
    def weighted(x):
        w = np.arange(8.0, 0.0, -1.0)
        return float(np.sum(w * np.maximum(x, 0))), w * (x > 0)

    x = np.full(8, 2.0)
    x[0] = 1e-13  # the largest derivative, 1e-13 above a kink: every step down to h/8 crosses it
    report = check_gradient(weighted, x, coords=0, largest=1, directions=0, h=1e-3)
    (p,) = report.probes
    assert p.where == (1,) and p.analytic == 7.0 and p.numeric == pytest.approx(7.0, rel=1e-10)
    assert "kinks at every step down to 0.00013 at x[0]: probed here instead" in p.notes
    assert report.evaluations == 1 + 12 + 10 + 4 and report.verdict(1e-6) == "PASS"


def test_a_max_pooling_switch_is_detected():
    h = 1e-3
    x = np.array([[[[1.0, 1.0 - 0.3 * h], [0.0, -1.0]]]])  # the maximum is 0.3 h above the runner-up
    dy = np.array([[[[1.5]]]])

    def pooled(x_):
        y, cache = pool_forward(x_, "max")
        return float(np.sum(y * dy)), pool_backward(dy, cache)

    report = check_gradient(pooled, x, coords=0, largest=1, directions=0, h=h)
    (p,) = report.probes
    assert p.where == (0, 0, 0, 0) and p.step == h / 8 and p.numeric == pytest.approx(1.5, rel=1e-10)
    assert "max-pooling switch" in p.notes[0] and report.verdict(1e-6) == "PASS"


def test_the_noise_of_f_is_measured():
    sigma = 1e-9

    def noisy(x):  # Σ x plus a deterministic pseudo-noise of standard deviation σ
        s = float(np.sum(x))
        return s + sigma * np.sqrt(2) * np.sin(1e13 * s), np.ones_like(x)

    measured, evaluations = measure_noise(noisy, X, noisy(X)[0], 1e-6, np.random.default_rng(0))
    assert evaluations == 12 and 1.5 * sigma < measured < 6 * sigma  # 3σ̂, σ̂ within a factor 2
    report = check_gradient(noisy, X, coords=3, directions=1)
    assert report.noise == report.measured_noise > 100 * EPS * abs(report.loss)
    assert report.passed(1e-6)


def test_the_report_keeps_its_old_interface():
    report = check_gradient(smooth, X, coords=3, directions=1, largest=2)
    assert len(report.probes) == 6 and report.median_rel_error <= report.max_rel_error
    assert report.worst(2)[0].rel_error == report.max_rel_error
    p = report.probes[0]
    assert (p.where, p.analytic, p.numeric, p.rel_error) == tuple(p[:4])
    text = report.format()
    assert "PASS" not in text and "relative error: max" in text and str(report) == text


def test_a_probe_left_unresolved_at_kinks_neither_fails_nor_passes_plainly():
    w = np.arange(8.0, 0.0, -1.0)

    def weighted(x):
        return float(np.sum(w * np.maximum(x, 0))), w * (x > 0)

    x = np.full(8, 2.0)
    x[[0, 2]] = 1e-13  # x[0] and its replacement x[2] (the next largest not probed) sit on kinks
    report = check_gradient(weighted, x, coords=0, largest=2, directions=0, h=1e-3)
    kinked, fine = report.probes
    assert kinked.where == (2,) and kinked.status(1e-6) == "kink" and kinked.bound == np.inf
    assert fine.where == (1,) and fine.status(1e-6) == "agrees"
    assert kinked.verdict(1e-6) == "unresolved: kinks at every step down to 1.3e-04"
    assert report.verdict(1e-6) == "PASS within the noise floor" and report.passed(1e-6)
    assert report.summary(1e-6).startswith("PASS within the noise floor: 1 of 2 probes agree to 1e-06")
    assert "1 unresolved at kinks" in report.summary(1e-6)
    x[1] = 1e-13  # now the replacement of x[0] is x[1], on a kink too: nothing is resolved
    only = check_gradient(weighted, x, coords=0, largest=1, directions=0, h=1e-3)
    assert only.verdict(1e-6) == "UNRESOLVED" and only.passed(1e-6)
    assert only.summary(1e-6).startswith("UNRESOLVED: every probe met kinks at every step")
