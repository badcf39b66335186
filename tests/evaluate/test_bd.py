"""BD-rate and BD-PSNR against published worked examples, exact properties, and bad curves."""

from __future__ import annotations

import numpy as np
import pytest

from depthq.evaluate.bd import bd_psnr, bd_rate, check_curve

# VCEG-M33's own example curves (G. Bjontegaard, "Calculation of average PSNR differences between
# RD-curves", VCEG-M33, 2001), (rate, PSNR dB). Published results, to 6 decimals, as asserted by
# tbr/bjontegaard_cpp example.cpp (a port of ETRO's VBA implementation, stated to comply with
# VCEG-M33 for 4 points): BD-PSNR 0.800713 dB, BD-rate -13.261773 %.
M33_A = [(90.33, 27.95), (181.03, 31.17), (332.99, 34.44), (547.79, 38.11)]
M33_B = [(127.1719, 29.9286), (186.14, 32.4165), (307.2924, 34.7013), (481.5588, 37.4561)]

# ETRO's barb512 curves from the same file (9 points: the least-squares cubic extension):
# BD-PSNR 0.072297 dB, BD-rate -0.903450 %.
ETRO_A = [
    (2.99899, 48.6681),
    (1.99884, 43.8357),
    (1.49673, 41.3982),
    (0.99707, 38.0124),
    (0.745941, 35.5122),
    (0.596436, 33.8673),
    (0.495148, 32.6658),
    (0.29425, 29.4505),
    (0.244049, 28.484),
]
ETRO_B = [
    (2.997253, 48.5637),
    (1.968292, 43.7318),
    (1.472565, 41.2727),
    (0.994965, 38.0001),
    (0.748871, 35.6375),
    (0.58902, 33.9057),
    (0.499176, 32.8318),
    (0.296753, 29.6851),
    (0.249634, 28.8244),
]

# JCT-VC common-test-condition curves with the spreadsheet's (PCHIP) BD-rate, as a fraction, from
# Netflix/vmaf python/test/bd_rate_calculator_test.py, class BDrateCalculatorJCTVCTest.
JCTVC = [
    (
        [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
        [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
        -0.00465215420752807,
    ),
    (
        [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
        [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
        -0.018779823450567612,
    ),
]


def _args(anchor, test):
    (ra, qa), (rt, qt) = zip(*anchor), zip(*test)
    return list(ra), list(qa), list(rt), list(qt)


def test_vceg_m33_worked_example_to_the_published_six_decimals():
    assert round(bd_psnr(*_args(M33_A, M33_B)), 6) == 0.800713
    assert round(bd_rate(*_args(M33_A, M33_B)), 6) == -13.261773


def test_etro_nine_point_example_to_the_published_six_decimals():
    assert round(bd_psnr(*_args(ETRO_A, ETRO_B)), 6) == 0.072297
    assert round(bd_rate(*_args(ETRO_A, ETRO_B)), 6) == -0.903450


@pytest.mark.parametrize("anchor, test, expected", JCTVC)
def test_pchip_matches_the_jctvc_spreadsheet_figures(anchor, test, expected):
    assert bd_rate(*_args(anchor, test), method="pchip") / 100 == pytest.approx(expected, abs=1e-12)


def test_the_two_methods_differ_on_the_same_points():
    anchor, test, _ = JCTVC[1]
    cubic, pchip = bd_rate(*_args(anchor, test)), bd_rate(*_args(anchor, test), method="pchip")
    assert abs(cubic - pchip) > 0.02  # percent: the choice of method shows in the figure


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_exact_shifts_give_exact_deltas(method):
    rates, psnrs = [0.2, 0.4, 0.8, 1.6, 3.0], [27.0, 30.5, 33.2, 36.9, 40.1]
    assert bd_rate(rates, psnrs, rates, psnrs, method) == pytest.approx(0.0, abs=1e-12)
    half = [r / 2 for r in rates]  # the same qualities at half the rate
    assert bd_rate(rates, psnrs, half, psnrs, method) == pytest.approx(-50.0, abs=1e-9)
    assert bd_psnr(rates, psnrs, rates, [p + 1 for p in psnrs], method) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_swapping_anchor_and_test_inverts_the_rate_ratio(method):
    a, b = _args(M33_A, M33_B)[:2], _args(M33_A, M33_B)[2:]
    forward, backward = bd_rate(*a, *b, method), bd_rate(*b, *a, method)
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1.0, abs=1e-12)
    assert bd_psnr(*a, *b, method) == pytest.approx(-bd_psnr(*b, *a, method), abs=1e-12)


def test_point_order_does_not_matter():
    ra, qa, rt, qt = _args(M33_A, M33_B)
    assert bd_rate(ra[::-1], qa[::-1], rt, qt) == pytest.approx(bd_rate(ra, qa, rt, qt), abs=1e-12)


@pytest.mark.parametrize(
    "rates, qualities, method, match",
    [
        ([1, 2, 3], [30, 31, 32], "cubic", "at least 4 points; got 3"),
        ([1], [30], "pchip", "at least 2 points; got 1"),
        ([1, 2, 3, 4], [30, 31, 32], "cubic", "equal-length"),
        ([1, 2, 3, 4], [30, 32, 31, 33], "cubic", "not monotonic"),
        ([1, 2, 2, 4], [30, 31, 32, 33], "pchip", "not monotonic"),
        ([0, 2, 3, 4], [30, 31, 32, 33], "cubic", "> 0"),
        ([1, 2, 3, 4], [30, 31, float("nan"), 33], "cubic", "finite"),
        ([1, 2, 3, 4], [30, 31, 32, 33], "akima", "one of"),
    ],
)
def test_bad_curves_raise_one_line(rates, qualities, method, match):
    with pytest.raises(ValueError, match=match):
        check_curve(rates, qualities, "anchor", method)
    good = ([1, 2, 3, 4], [30, 31, 32, 33])
    with pytest.raises(ValueError, match=match):
        bd_rate(*good, rates, qualities, method)


def test_curves_that_do_not_overlap_raise():
    rates = [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="do not overlap in quality"):
        bd_rate(rates, [30, 31, 32, 33], rates, [40, 41, 42, 43])
    with pytest.raises(ValueError, match="do not overlap in rate"):
        bd_psnr(rates, [30, 31, 32, 33], [10.0, 20.0, 30.0, 40.0], [30, 31, 32, 33])


def test_numpy_arrays_are_accepted():
    ra, qa, rt, qt = (np.asarray(v) for v in _args(M33_A, M33_B))
    assert round(bd_rate(ra, qa, rt, qt), 6) == -13.261773
