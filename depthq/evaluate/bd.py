"""Bjontegaard deltas between two rate-distortion curves: BD-rate and BD-PSNR.

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33 (2001).
Each curve is a set of (rate, quality) points: rate in any positive unit (bits per pixel,
kbit/s; the same for both curves), quality in dB (PSNR, or MS-SSIM in dB).

- **BD-rate** (percent): log(rate) is interpolated as a function of quality on each curve and
  both are integrated over the qualities the two curves share; the mean difference d of
  log-rates gives (exp(d) - 1) * 100, the average rate change of ``test`` at equal quality
  (negative: ``test`` needs fewer bits than ``anchor``).
- **BD-PSNR** (dB): quality interpolated as a function of log(rate), integrated over the shared
  log-rates; the mean quality difference of ``test`` over ``anchor`` at equal rate.

Interpolation, ``method``:

- ``"cubic"``: VCEG-M33's third-order polynomial, a least-squares fit when a curve has more than
  4 points (the extension of the ETRO / VCEG reference implementations), integrated exactly;
- ``"pchip"``: piecewise cubic Hermite interpolation (scipy's ``PchipInterpolator``, integrated
  exactly), the method of the JCT-VC / JVET common-test-conditions spreadsheets (JCTVC-L1100),
  which does not overshoot between points.

The two methods give different numbers on the same points; say which one a figure used.

Checks, each a one-line ``ValueError``: the arrays of one curve have one length; at least 4
points per curve for ``"cubic"`` (a cubic has 4 coefficients) and 2 for ``"pchip"``; finite
values and positive rates; monotonic curves (sorted by rate, quality strictly increases: more
bits must buy more quality); and an overlapping interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

METHODS = ("cubic", "pchip")
MIN_POINTS = {"cubic": 4, "pchip": 2}


def check_curve(rates: Sequence[float], qualities: Sequence[float], what: str, method: str = "cubic") -> None:
    """Raise ``ValueError`` unless (rates, qualities) is a curve BD can use with ``method``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    r, q = np.asarray(rates, dtype=np.float64), np.asarray(qualities, dtype=np.float64)
    if r.ndim != 1 or q.ndim != 1 or len(r) != len(q):
        raise ValueError(f"{what}: expected equal-length 1-D rates and qualities; got shapes {r.shape} and {q.shape}")
    if len(r) < MIN_POINTS[method]:
        raise ValueError(f"{what}: {method} BD needs at least {MIN_POINTS[method]} points; got {len(r)}")
    if not (np.isfinite(r).all() and np.isfinite(q).all()) or (r <= 0).any():
        raise ValueError(f"{what}: rates must be finite and > 0 and qualities finite; got {r.tolist()}, {q.tolist()}")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    bad = np.flatnonzero((np.diff(r) <= 0) | (np.diff(q) <= 0))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{what}: not monotonic: sorted by rate, quality must strictly increase; point "
            f"(rate {r[i + 1]:g}, quality {q[i + 1]:g}) follows (rate {r[i]:g}, quality {q[i]:g})"
        )


def _integral(x: np.ndarray, y: np.ndarray, method: str) -> Callable[[float, float], float]:
    """The integral of the ``method`` interpolant of y(x) between two bounds."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if method == "cubic":
        primitive = np.polyint(np.polyfit(x, y, 3))
        return lambda lo, hi: float(np.polyval(primitive, hi) - np.polyval(primitive, lo))
    curve = PchipInterpolator(x, y)
    return lambda lo, hi: float(curve.integrate(lo, hi))


def _mean_difference(x_anchor, y_anchor, x_test, y_test, method: str, axis: str) -> float:
    """The mean of y_test(x) - y_anchor(x) over the x both curves cover."""
    lo, hi = max(x_anchor.min(), x_test.min()), min(x_anchor.max(), x_test.max())
    if not hi > lo:
        raise ValueError(
            f"the curves do not overlap in {axis}: anchor [{x_anchor.min():g}, {x_anchor.max():g}], "
            f"test [{x_test.min():g}, {x_test.max():g}]"
        )
    anchor = _integral(x_anchor, y_anchor, method)(lo, hi)
    test = _integral(x_test, y_test, method)(lo, hi)
    return float((test - anchor) / (hi - lo))


def _curves(anchor_rates, anchor_quality, test_rates, test_quality, method):
    check_curve(anchor_rates, anchor_quality, "anchor", method)
    check_curve(test_rates, test_quality, "test", method)
    as_array = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    return (
        np.log(as_array(anchor_rates)),
        as_array(anchor_quality),
        np.log(as_array(test_rates)),
        as_array(test_quality),
    )


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "cubic",
) -> float:
    """BD-rate of ``test`` against ``anchor`` in percent (negative: ``test`` saves bits).

    Args:
        anchor_rates: (N,) positive rates of the anchor (e.g. bits per pixel).
        anchor_quality: (N,) the anchor's qualities in dB (PSNR, or MS-SSIM in dB).
        test_rates: (N,) positive rates of the tested curve, in the anchor's unit.
        test_quality: (N,) its qualities in dB.
        method: "cubic" (VCEG-M33) or "pchip" (JCT-VC's spreadsheet).

    Example (VCEG-M33's own curves)::

        bd_rate([90.33, 181.03, 332.99, 547.79], [27.95, 31.17, 34.44, 38.11],
                [127.1719, 186.14, 307.2924, 481.5588], [29.9286, 32.4165, 34.7013, 37.4561])  # -13.26
    """
    log_a, q_a, log_t, q_t = _curves(anchor_rates, anchor_quality, test_rates, test_quality, method)
    return (math.exp(_mean_difference(q_a, log_a, q_t, log_t, method, "quality")) - 1.0) * 100.0


def bd_psnr(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "cubic",
) -> float:
    """BD-PSNR of ``test`` against ``anchor``: the mean quality gain at equal rate, in the
    qualities' unit (dB). Arguments as ``bd_rate``; the log base of the rates cancels."""
    log_a, q_a, log_t, q_t = _curves(anchor_rates, anchor_quality, test_rates, test_quality, method)
    return float(_mean_difference(log_a, q_a, log_t, q_t, method, "rate"))
