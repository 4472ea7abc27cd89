"""One fused pass over the smoothed tablet square: every per-patch sum the patch features need (numba).

Per patch of the ``tiles × tiles`` grid: the number of pixels on the tablet, Σc, Σc², the numbers of
pixels below two grey levels and above one, and Σ|∇c| (3 × 3 Sobel magnitude, borders reflected like
OpenCV's default ``BORDER_REFLECT_101``), all over the pixels where ``inside`` is set. Hand-written
because OpenCV needs ≈ 12 memory-bound passes and float32 temporaries for the same sums (Sobel × 2,
magnitude, three masks, products, seven area resizes); this reads each pixel once and accumulates in
float64 (the gradient in float32, like OpenCV's): ≈ 9 ms at 2580 × 1944 against ≈ 60 ms for the
OpenCV passes it replaces (``bench/bench_texture_fullres.py`` times the whole path).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: rows of :func:`patch_sums`'s result
SUMS: tuple[str, ...] = ("count", "sum", "sum2", "dark", "very_dark", "bright", "grad")


# reassoc: lets LLVM vectorise the reductions (float64 sums in another order: ≈ 1e-16 relative)
@njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc", "contract", "nsz"})
def patch_sums(img: np.ndarray, inside: np.ndarray, tiles: int, s: int, lo_dark: float, lo_very_dark: float,
               hi_bright: float) -> np.ndarray:
    """(len(SUMS), tiles, tiles) float64 sums over the ``s × s`` blocks of the square ``img`` (float32,
    side ``tiles * s`` ≥ 2) where ``inside`` (uint8) is non-zero; the levels compare as ``c < lo``, ``c > hi``."""
    side = img.shape[0]
    out = np.zeros((7, tiles, tiles))
    # per row: the vertical parts of the two Sobel kernels, v = [1 2 1]ᵀ·c and d = [-1 0 1]ᵀ·c, at x + 1
    # (float32 like OpenCV's Sobel; ±1 column of reflected border), and the mask as 0/1
    v = np.zeros(side + 2, np.float32)
    d = np.zeros(side + 2, np.float32)
    w = np.zeros(side)
    two = np.float32(2.0)
    for y in range(side):
        ym = y - 1 if y > 0 else 1
        yp = y + 1 if y < side - 1 else side - 2
        r0 = img[ym]
        r1 = img[y]
        r2 = img[yp]
        m = inside[y]
        for x in range(side):
            a = r0[x]
            b = r2[x]
            v[x + 1] = a + two * r1[x] + b
            d[x + 1] = b - a
            w[x] = np.float64(m[x] != 0)
        v[0], d[0] = v[2], d[2]
        v[side + 1], d[side + 1] = v[side - 1], d[side - 1]
        ty = y // s
        for tx in range(tiles):
            n = 0.0
            nd = 0.0
            nv = 0.0
            nb = 0.0
            s1 = 0.0
            s2 = 0.0
            sg = 0.0
            for x in range(tx * s, tx * s + s):  # branch-free (the mask multiplies) so that it vectorises
                wx = w[x]
                c = np.float64(r1[x])
                gx = v[x + 2] - v[x]
                gy = d[x] + two * d[x + 1] + d[x + 2]
                n += wx
                s1 += wx * c
                s2 += wx * c * c
                sg += wx * np.float64(np.sqrt(gx * gx + gy * gy))
                nd += wx * (c < lo_dark)
                nv += wx * (c < lo_very_dark)
                nb += wx * (c > hi_bright)
            out[0, ty, tx] += n
            out[1, ty, tx] += s1
            out[2, ty, tx] += s2
            out[3, ty, tx] += nd
            out[4, ty, tx] += nv
            out[5, ty, tx] += nb
            out[6, ty, tx] += sg
    return out


def warmup() -> None:
    """Load (or compile, the first time) the kernel on a tiny square, so the first frame is not slow."""
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    patch_sums(img, np.ones((8, 8), np.uint8), 2, 4, 10.0, 5.0, 50.0)
