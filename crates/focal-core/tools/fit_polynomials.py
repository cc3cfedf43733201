"""Fits the polynomial coefficients used by focal-core's vector exp and log (src/simd/math.rs).

Near-minimax fits of the relative error by iteratively reweighted least squares (Lawson) on
Chebyshev nodes, then rounded to f32. Run: `python3 crates/focal-core/tools/fit_polynomials.py`
(needs numpy). Prints each polynomial's coefficients and its maximum relative error in f64.
"""

import numpy as np


def fit_relative(f, a, b, degree, nodes=4000, rounds=30):
    x = 0.5 * (a + b) + 0.5 * (b - a) * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)
    y = f(x)
    weight = 1 / np.abs(y)
    for _ in range(rounds):
        A = np.vander(x, degree + 1, increasing=True) * weight[:, None]
        c, *_ = np.linalg.lstsq(A, y * weight, rcond=None)
        err = A @ c - y * weight
        weight = weight * (np.abs(err) + 1e-30) ** 0.5
        weight = weight / weight.max() / np.abs(y)
    return c.astype(np.float32)


def main():
    # log(1 + e) = 2 z P(z^2), z = e / (2 + e): P(w) = atanh(sqrt(w)) / sqrt(w), w in [0, 1/9].
    def atanh_ratio(w):
        s = np.sqrt(np.maximum(w, 1e-300))
        return np.where(w > 0, np.arctanh(s) / s, 1.0)

    p = fit_relative(atanh_ratio, 0.0, 1.0 / 9.0, 3)
    w = np.linspace(0, 1 / 9, 200001)
    print("atanh P(w), w in [0, 1/9]:", [f"{v:.9e}" for v in p])
    print("  max relative error:", np.max(np.abs(np.polyval(p[::-1].astype(np.float64), w) / atanh_ratio(w) - 1)))

    # e^r = 1 + r + r^2 Q(r), r in [-ln2/2, ln2/2].
    def q_of(r):
        return np.where(np.abs(r) > 1e-4, (np.expm1(r) - r) / r**2, 0.5 + r / 6 + r * r / 24)

    h = np.log(2) / 2
    q = fit_relative(q_of, -h, h, 3)
    r = np.linspace(-h, h, 200001)
    approx = 1 + r + r**2 * np.polyval(q[::-1].astype(np.float64), r)
    print("exp Q(r), r in [-ln2/2, ln2/2]:", [f"{v:.9e}" for v in q])
    print("  max relative error of e^r:", np.max(np.abs(approx / np.exp(r) - 1)))


if __name__ == "__main__":
    main()
