"""Feature selection for the texture classifiers (seed-001, section 2.2.3).

Three rankers keep the top 15 of the 281 texture features, as the paper did in WEKA with the
``Ranker`` search, plus the paper's exhaustive search for the best *pair* of features:

* **chi-square (CS)** and **gain ratio (GR)** work on discrete attributes. WEKA discretises numeric
  attributes with the supervised MDL method of Fayyad & Irani (1993) before scoring them; we do the
  same (:func:`mdl_cut_points`), *inside the training fold*. A feature for which MDL accepts no cut
  point is one interval: CS = GR = 0, exactly as in WEKA. Ties (typically many zeros on small sets)
  are broken by the information gain of the best single cut, so the ranking is always total and
  deterministic.
* **ReliefF (RF)**: skrebate's ``ReliefF`` algorithm (every feature continuous, Manhattan distance on
  range-normalised features, ``n_neighbors`` = WEKA's default 10, capped by the class sizes),
  re-implemented vectorised (:func:`relieff_scores`): skrebate loops in Python per instance and
  feature (≈ 2 s per fit at 120 × 281), far too slow to refit in each leave-one-out fold. The tests
  check that both give the same weights. Constant features rank last.
* **best pair**: every one of the C(p, 2) pairs is scored by the *exact leave-one-out accuracy of a
  Gaussian naive Bayes classifier* on that pair, computed in closed form and vectorised over all
  pairs at once (O(p² n), about a second for p = 281, n = 1000). Ties are broken by the LOO log-loss.

Every selector is a scikit-learn ``SelectorMixin`` estimator, so it can sit in a ``Pipeline`` and is
refit on each training fold: nothing from a test fold reaches selection.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted

Method = Literal["chi2", "gain_ratio", "relieff"]

#: feature-set name -> (selector kind, k); "all" keeps every feature
FEATURE_SETS: dict[str, tuple[str, int]] = {
    "all": ("all", 0),
    "cs15": ("chi2", 15),
    "gr15": ("gain_ratio", 15),
    "rf15": ("relieff", 15),
    "pair": ("pair", 2),
}
#: how the report labels each feature set (the paper's wording)
FEATURE_SET_LABELS: dict[str, str] = {
    "all": "All 281 features",
    "cs15": "Top 15 by chi-square (CS)",
    "gr15": "Top 15 by gain ratio (GR)",
    "rf15": "Top 15 by ReliefF (RF)",
    "pair": "Best pair (exhaustive search)",
}


# --------------------------------------------------------------------------------------------------
# Supervised MDL discretisation (Fayyad & Irani 1993), as WEKA's weka.filters.supervised.Discretize
# --------------------------------------------------------------------------------------------------
def _entropy_rows(counts: np.ndarray) -> np.ndarray:
    """Entropy (bits) of each row of a (m, k) count matrix."""
    tot = counts.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tot > 0, counts / np.maximum(tot, 1), 0.0)
        logp = np.where(p > 0, np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -(p * logp).sum(axis=-1)


def _best_cut(xs: np.ndarray, onehot: np.ndarray) -> tuple[int, float, np.ndarray, np.ndarray] | None:
    """Best boundary cut of a sorted segment: (index of last left sample, gain, left, right counts)."""
    n = len(xs)
    if n < 2:
        return None
    cum = np.cumsum(onehot, axis=0)  # (n, k) counts of samples [0..i]
    total = cum[-1]
    valid = np.flatnonzero(xs[:-1] < xs[1:])  # cut between i and i+1 only where the value changes
    if valid.size == 0:
        return None
    left = cum[valid]
    right = total - left
    nl = (valid + 1).astype(float)
    e = (nl * _entropy_rows(left) + (n - nl) * _entropy_rows(right)) / n
    j = int(np.argmin(e))
    gain = float(_entropy_rows(total[None])[0] - e[j])
    return int(valid[j]), gain, left[j], right[j]


def mdl_cut_points(x: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Cut points of one numeric feature by Fayyad & Irani's recursive MDL criterion.

    ``y`` holds integer class codes 0..k-1. Returns the sorted thresholds (a value ``v`` falls in
    interval ``searchsorted(cuts, v, side="right")``); an empty array when no cut is accepted.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=int)
    k = int(n_classes if n_classes is not None else y.max() + 1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    onehot = np.eye(k)[y[order]]
    cuts: list[float] = []
    stack = [(0, len(xs))]
    while stack:
        lo, hi = stack.pop()
        seg_x, seg_y = xs[lo:hi], onehot[lo:hi]
        best = _best_cut(seg_x, seg_y)
        if best is None:
            continue
        i, gain, lc, rc = best
        n = hi - lo
        total = seg_y.sum(axis=0)
        ent_s, ent_l, ent_r = _entropy_rows(np.stack([total, lc, rc]))
        k_s, k_l, k_r = (int((c > 0).sum()) for c in (total, lc, rc))
        delta = np.log2(3.0**k_s - 2) - (k_s * ent_s - k_l * ent_l - k_r * ent_r)
        if gain <= (np.log2(n - 1) + delta) / n:
            continue
        cuts.append(0.5 * (seg_x[i] + seg_x[i + 1]))
        stack.append((lo, lo + i + 1))
        stack.append((lo + i + 1, hi))
    return np.array(sorted(cuts), dtype=float)


def _contingency(x: np.ndarray, y: np.ndarray, cuts: np.ndarray, k: int) -> np.ndarray:
    """(intervals, classes) counts of one discretised feature."""
    bins = np.searchsorted(cuts, x, side="right")
    table = np.zeros((len(cuts) + 1, k))
    np.add.at(table, (bins, y), 1.0)
    return table


def _encode(y: np.ndarray) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(y), return_inverse=True)
    return codes.astype(int), int(codes.max()) + 1


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("feature matrix contains NaN or infinite values")
    codes, k = _encode(y)
    if len(codes) != len(X):
        raise ValueError(f"{len(X)} samples but {len(codes)} labels")
    if k < 2:
        raise ValueError("feature selection needs at least two classes")
    return X, codes, k


def _discretised_scores(X: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chi-square, gain ratio, best-single-cut gain) of every feature after MDL discretisation.

    The first MDL cut of all features is found at once (vectorised over features); only features
    whose first cut is accepted recurse. Memoised on the data so CS and GR share one pass per fold.
    """
    key = (X.shape, hashlib.sha1(X.tobytes()).hexdigest(), hashlib.sha1(codes.tobytes()).hexdigest(), k)
    if _MEMO.get("key") == key:
        return _MEMO["value"]
    n, p = X.shape
    order = np.argsort(X, axis=0, kind="mergesort")
    xs = np.take_along_axis(X, order, axis=0)
    cum = np.cumsum(np.eye(k)[codes[order]], axis=0)  # (n, p, k)
    total = cum[-1]  # (p, k)
    left, right = cum[:-1], total[None] - cum[:-1]  # (n-1, p, k)
    nl = np.arange(1, n, dtype=float)[:, None]
    e = (nl * _entropy_rows(left) + (n - nl) * _entropy_rows(right)) / n  # (n-1, p)
    e = np.where(xs[:-1] < xs[1:], e, np.inf)
    j = np.argmin(e, axis=0)
    has_cut = np.isfinite(e[j, np.arange(p)])
    ent_s = _entropy_rows(total)
    gain = np.where(has_cut, ent_s - np.where(has_cut, e[j, np.arange(p)], 0.0), 0.0)
    lc, rc = left[j, np.arange(p)], right[j, np.arange(p)]
    k_s, k_l, k_r = ((c > 0).sum(-1) for c in (total, lc, rc))
    delta = np.log2(3.0**k_s - 2) - (k_s * ent_s - k_l * _entropy_rows(lc) - k_r * _entropy_rows(rc))
    accepted = has_cut & (gain > (np.log2(max(n - 1, 1)) + delta) / n)
    chi2 = np.zeros(p)
    gr = np.zeros(p)
    h_c = float(_entropy_rows(total[:1])[0])
    for f in np.flatnonzero(accepted):
        cuts = mdl_cut_points(X[:, f], codes, k)
        obs = _contingency(X[:, f], codes, cuts, k)
        exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
        chi2[f] = float(np.where(exp > 0, (obs - exp) ** 2 / np.where(exp > 0, exp, 1.0), 0.0).sum())
        n_a = obs.sum(1)
        h_a = float(_entropy_rows(n_a[None])[0])
        gr[f] = (h_c - float((n_a / n_a.sum() * _entropy_rows(obs)).sum())) / h_a if h_a > 0 else 0.0
    value = (chi2, gr, gain)
    _MEMO.update(key=key, value=value)
    return value


_MEMO: dict[str, object] = {}


def chi2_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Chi-square statistic of each MDL-discretised feature against the class (WEKA's ChiSquaredAttributeEval)."""
    X, codes, k = _check_xy(X, y)
    return _discretised_scores(X, codes, k)[0].copy()


def gain_ratio_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gain ratio (H(C) − H(C|A)) / H(A) of each MDL-discretised feature (WEKA's GainRatioAttributeEval)."""
    X, codes, k = _check_xy(X, y)
    return _discretised_scores(X, codes, k)[1].copy()


def relieff_scores(X: np.ndarray, y: np.ndarray, n_neighbors: int = 10) -> np.ndarray:
    """ReliefF weights (two or more classes), vectorised; the same algorithm and numbers as skrebate's
    ``ReliefF(categorical_features=[])``.

    Features are range-normalised, neighbours found by Manhattan distance; for every instance the
    ``k`` nearest hits and ``k`` nearest misses update each weight by
    ``(−mean |x − hit| + mean |x − miss|) / (range · n)``. skrebate computes exactly this with a Python
    loop per instance and per feature (≈ 2 s for 120 × 281, 6 s for 300 × 281), too slow to refit in
    every leave-one-out fold; ``tests/texture`` checks that both agree. Constant features get −inf.
    """
    X, codes, k = _check_xy(X, y)
    counts = np.bincount(codes, minlength=k)
    if counts.min() < 2:
        raise ValueError("ReliefF needs at least two samples of every class")
    rng_ = np.ptp(X, axis=0)
    varying = rng_ > 0
    scores = np.full(X.shape[1], -np.inf)
    if not varying.any():
        return scores
    Xn = (X[:, varying] - X[:, varying].min(0)) / rng_[varying]
    n = len(Xn)
    from scipy.spatial.distance import cdist

    D = cdist(Xn, Xn, metric="cityblock")
    np.fill_diagonal(D, np.inf)
    prior = counts / n
    w = np.zeros(Xn.shape[1])
    # hits: the same class; misses: each other class c, weighted P(c) / (1 − P(class of x)) (Kononenko
    # 1994, as WEKA and skrebate do for several classes; with two classes the weight is 1)
    targets = [(None, -1.0)] + [(c, 1.0) for c in range(k)]
    for cls, sign in targets:
        if cls is None:
            member = codes[:, None] == codes[None, :]
            avail = counts[codes] - 1
            weight = np.ones(n)
        else:
            member = np.broadcast_to(codes[None, :] == cls, (n, n)) & (codes[:, None] != cls)
            avail = np.where(codes == cls, 0, counts[cls])
            weight = np.where(codes == cls, 0.0, prior[cls] / (1.0 - prior[codes]))
        rows = np.flatnonzero(avail > 0)
        if rows.size == 0:
            continue
        Dm = np.where(member[rows], D[rows], np.inf)
        kk = np.minimum(n_neighbors, avail[rows])
        kmax = int(kk.max())
        nn = np.argsort(Dm, axis=1, kind="stable")[:, :kmax]  # (m, kmax)
        use = np.arange(kmax)[None, :] < kk[:, None]
        diff = np.abs(Xn[rows][:, None, :] - Xn[nn])  # (m, kmax, p)
        contrib = (diff * use[..., None]).sum(1) / kk[:, None]
        w += sign * (contrib * weight[rows][:, None]).sum(0)
    scores[varying] = w / n
    return scores


def rank_features(X: np.ndarray, y: np.ndarray, method: Method) -> np.ndarray:
    """Feature indices, best first, by ``method`` (ties by best-cut information gain, then index)."""
    X, codes, k = _check_xy(X, y)
    if method == "chi2":
        primary = chi2_scores(X, codes)
    elif method == "gain_ratio":
        primary = gain_ratio_scores(X, codes)
    elif method == "relieff":
        primary = relieff_scores(X, codes)
    else:
        raise ValueError(f"unknown ranking method {method!r} (chi2, gain_ratio, relieff)")
    secondary = _discretised_scores(X, codes, k)[2]
    idx = np.arange(X.shape[1])
    return np.lexsort((idx, -secondary, -primary))


# --------------------------------------------------------------------------------------------------
# Exhaustive best-pair search: exact LOO accuracy of Gaussian naive Bayes for every pair
# --------------------------------------------------------------------------------------------------
def _loo_nb_log_ratio(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature f and sample i: log p(x_if | 1) − log p(x_if | 0) with sample i left out of the
    class statistics (Gaussian, ML variance + sklearn's ``var_smoothing`` of 1e-9 × the largest
    variance), and per sample the LOO log prior ratio. Returns (d of shape (p, n), b of shape (n,))."""
    n, p = X.shape
    mu, sd = X.mean(0), X.std(0)
    Z = (X - mu) / np.where(sd > 0, sd, 1.0)  # standardise: numerically safe running sums
    eps = 1e-9 * max(float(Z.var(0).max()), 1e-12)
    ll = np.empty((2, n, p))
    for c in (0, 1):
        m = y == c
        nc = int(m.sum())
        s, q = Z[m].sum(0), (Z[m] ** 2).sum(0)
        cnt = np.full((n, 1), float(nc))
        S = np.broadcast_to(s, (n, p)).copy()
        Q = np.broadcast_to(q, (n, p)).copy()
        S[m] -= Z[m]
        Q[m] -= Z[m] ** 2
        cnt[m] -= 1
        mean = S / cnt
        var = np.maximum(Q / cnt - mean**2, 0.0) + eps
        ll[c] = -0.5 * np.log(2 * np.pi * var) - (Z - mean) ** 2 / (2 * var)
    n1 = float(y.sum())
    n0 = n - n1
    b = np.log((n1 - y) / (n - 1)) - np.log((n0 - (1 - y)) / (n - 1))
    return (ll[1] - ll[0]).T, b


def _pair_inputs(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, codes, k = _check_xy(X, y)
    if k != 2:
        raise ValueError("the best-pair search needs exactly two classes")
    if np.bincount(codes).min() < 2:
        raise ValueError("the best-pair search needs at least two samples of each class")
    d, b = _loo_nb_log_ratio(X, codes)
    return d, b, codes


def pair_loo_accuracy(X: np.ndarray, y: np.ndarray, block: int = 32) -> np.ndarray:
    """Exact LOO accuracy of Gaussian NB for every pair of features, as a symmetric (p, p) array
    (the diagonal is one feature counted twice, not a pair). Binary labels only."""
    d, b, codes = _pair_inputs(X, y)
    return _pair_accuracy(d, b, codes, block)


def _pair_accuracy(d: np.ndarray, b: np.ndarray, codes: np.ndarray, block: int = 32) -> np.ndarray:
    p, n = d.shape
    correct = np.zeros((p, p))
    for lo in range(0, n, block):
        sl = slice(lo, min(n, lo + block))
        z = d[:, None, sl] + d[None, :, sl] + b[sl]  # (p, p, B) LOO log-odds of class 1
        correct += ((z > 0) == (codes[sl] == 1)).sum(-1)  # sklearn's argmax picks class 0 on a tie
    return correct / n


def best_pair(X: np.ndarray, y: np.ndarray) -> tuple[int, int, float]:
    """The pair (i < j) with the highest exact LOO accuracy of Gaussian NB; ties go to the lowest
    mean LOO log-loss (computed for the tied pairs only), then the lowest indices."""
    d, b, codes = _pair_inputs(X, y)
    acc = _pair_accuracy(d, b, codes)
    iu, ju = np.triu_indices(acc.shape[0], k=1)
    a = acc[iu, ju]
    top = np.flatnonzero(a == a.max())
    sign = np.where(codes == 1, 1.0, -1.0)
    z = d[iu[top]] + d[ju[top]] + b  # (n_tied, n)
    loss = np.logaddexp(0.0, -sign * z).mean(1)
    best = int(top[np.argmin(loss)])  # argmin keeps the first (lowest-index) pair on exact ties
    return int(iu[best]), int(ju[best]), float(a[best])


# --------------------------------------------------------------------------------------------------
# scikit-learn selectors
# --------------------------------------------------------------------------------------------------
class RankSelector(SelectorMixin, BaseEstimator):
    """Keep the top ``k`` features ranked by chi-square, gain ratio or ReliefF (fit on the training fold)."""

    def __init__(self, method: Method = "chi2", k: int = 15):
        self.method = method
        self.k = k

    def fit(self, X: np.ndarray, y: np.ndarray) -> RankSelector:
        X = np.asarray(X, dtype=float)
        self.ranking_ = rank_features(X, y, self.method)
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "ranking_")
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.ranking_[: min(self.k, self.n_features_in_)]] = True
        return mask

    def selected_indices(self) -> np.ndarray:
        """Selected feature indices in rank order (best first)."""
        check_is_fitted(self, "ranking_")
        return self.ranking_[: min(self.k, self.n_features_in_)].copy()


class BestPairSelector(SelectorMixin, BaseEstimator):
    """Keep the pair of features with the best exact LOO accuracy of Gaussian NB on the training fold."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> BestPairSelector:
        X = np.asarray(X, dtype=float)
        i, j, acc = best_pair(X, y)
        self.pair_ = (i, j)
        self.pair_loo_accuracy_ = acc
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "pair_")
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[list(self.pair_)] = True
        return mask

    def selected_indices(self) -> np.ndarray:
        check_is_fitted(self, "pair_")
        return np.array(self.pair_)


_RANKERS = {"cs": ("chi2", "chi-square (CS)"), "gr": ("gain_ratio", "gain ratio (GR)"), "rf": ("relieff", "ReliefF (RF)")}


def parse_feature_set(feature_set: str) -> tuple[str, int]:
    """(selector kind, k) of a feature-set name: one of :data:`FEATURE_SETS`, or ``cs<k>`` / ``gr<k>`` /
    ``rf<k>`` for the top k of a ranker (e.g. ``rf60``). Raises ValueError on anything else."""
    if feature_set in FEATURE_SETS:
        return FEATURE_SETS[feature_set]
    m = re.fullmatch(r"(cs|gr|rf)([1-9][0-9]{0,3})", feature_set)
    if m:
        return _RANKERS[m.group(1)][0], int(m.group(2))
    raise ValueError(f"unknown feature set {feature_set!r} (known: {', '.join(FEATURE_SETS)}, or cs<k>/gr<k>/rf<k>)")


def feature_set_label(feature_set: str) -> str:
    """How reports name a feature set."""
    if feature_set in FEATURE_SET_LABELS:
        return FEATURE_SET_LABELS[feature_set]
    kind, k = parse_feature_set(feature_set)
    return f"Top {k} by {_RANKERS[feature_set[:2]][1]}"


def make_selector(feature_set: str) -> RankSelector | BestPairSelector | None:
    """Selector for a feature-set name (:func:`parse_feature_set`; None for "all")."""
    kind, k = parse_feature_set(feature_set)
    if kind == "all":
        return None
    if kind == "pair":
        return BestPairSelector()
    return RankSelector(method=kind, k=k)  # type: ignore[arg-type]


def select_indices(feature_set: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fit the feature set's selector on (X, y) and return the kept column indices, best first."""
    sel = make_selector(feature_set)
    if sel is None:
        return np.arange(np.asarray(X).shape[1])
    sel.fit(X, y)
    return sel.selected_indices()
