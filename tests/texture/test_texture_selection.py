"""Feature selection: rankers recover planted features, ReliefF equals skrebate, the best-pair search
is exact and finds a planted pair, and per-fold selection does not leak the test sample."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.offline.texture.experiment import Cell, evaluate_folds, make_splits
from inspector.offline.texture.selection import (
    BestPairSelector,
    RankSelector,
    best_pair,
    chi2_scores,
    gain_ratio_scores,
    mdl_cut_points,
    pair_loo_accuracy,
    rank_features,
    relieff_scores,
    select_indices,
)

P = 281


def _noise_with_planted(n: int, planted: dict[int, float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """P noise features; feature f gets a class mean shift of planted[f] standard deviations."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, P)) * rng.uniform(0.1, 100.0, size=P)  # MaZda-like wildly different scales
    for f, shift in planted.items():
        X[:, f] = rng.normal(size=n) + shift * y
    return X, y


@pytest.mark.parametrize("method", ["chi2", "gain_ratio", "relieff"])
def test_rankers_put_a_planted_feature_first(method: str) -> None:
    X, y = _noise_with_planted(60, {137: 3.0}, seed=1)
    ranking = rank_features(X, y, method)
    assert ranking[0] == 137
    assert sorted(ranking.tolist()) == list(range(P))  # a total ranking, every feature once


def test_mdl_discretisation_accepts_a_real_cut_and_rejects_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    step = np.where(y == 1, 5.0, 1.0) + rng.uniform(0, 0.5, 60)
    cuts = mdl_cut_points(step, y)
    assert cuts.size == 1 and 1.5 < cuts[0] < 5.0
    assert mdl_cut_points(rng.normal(size=60), y).size == 0


def test_chi2_and_gain_ratio_score_zero_for_features_without_an_mdl_cut() -> None:
    X, y = _noise_with_planted(60, {5: 3.0}, seed=2)
    chi, gr = chi2_scores(X, y), gain_ratio_scores(X, y)
    assert chi[5] > 0 and 0 < gr[5] <= 1
    no_cut = [f for f in range(P) if mdl_cut_points(X[:, f], y).size == 0]
    assert len(no_cut) > 200
    assert np.all(chi[no_cut] == 0) and np.all(gr[no_cut] == 0)
    # a perfectly separating feature: chi² = n, gain ratio = 1 (one cut, balanced classes)
    X[:, 9] = y * 10.0 + np.arange(60) * 1e-3
    assert chi2_scores(X, y)[9] == pytest.approx(60.0)
    assert gain_ratio_scores(X, y)[9] == pytest.approx(1.0)


def test_relieff_equals_skrebate_and_keeps_15_distinct_features() -> None:
    from skrebate import ReliefF

    X, y = _noise_with_planted(50, {3: 2.0, 17: 1.5}, seed=3)
    X = X[:, :40]
    ours = relieff_scores(X, y, n_neighbors=10)
    ref = ReliefF(n_features_to_select=15, n_neighbors=10, categorical_features=[], label_type="binary")
    ref.fit(X.copy(), y)
    np.testing.assert_allclose(ours, ref.feature_importances_, rtol=1e-10, atol=1e-12)
    assert len(set(ref.top_features_[:15].tolist())) == 15
    sel = RankSelector("relieff", k=15).fit(X, y)
    idx = sel.selected_indices()
    assert len(set(idx.tolist())) == 15 and {3, 17} <= set(idx.tolist())
    assert sel.get_support().sum() == 15 and sel.transform(X).shape == (50, 15)


def test_relieff_ranks_constant_features_last() -> None:
    X, y = _noise_with_planted(30, {0: 2.0}, seed=4)
    X[:, 1] = 7.0
    s = relieff_scores(X, y)
    assert s[1] == -np.inf and rank_features(X, y, "relieff")[-1] == 1


def test_pair_loo_accuracy_is_exact_gaussian_nb_leave_one_out() -> None:
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.naive_bayes import GaussianNB

    X, y = _noise_with_planted(40, {2: 1.0, 8: 1.0}, seed=5)
    X = X[:, :30]
    acc = pair_loo_accuracy(X, y)
    rng = np.random.default_rng(0)
    for i, j in [(2, 8), *rng.choice(30, size=(3, 2), replace=False).tolist()]:
        ref = cross_val_score(GaussianNB(), X[:, [i, j]], y, cv=LeaveOneOut()).mean()
        assert acc[i, j] == pytest.approx(ref), (i, j)


def test_best_pair_search_finds_the_planted_pair() -> None:
    # each planted feature alone is a weak predictor; together they are the best pair of all C(281, 2)
    X, y = _noise_with_planted(200, {41: 1.6, 230: 1.6}, seed=6)
    i, j, acc = best_pair(X, y)
    assert (i, j) == (41, 230)
    all_acc = pair_loo_accuracy(X, y)
    assert acc == all_acc[41, 230] == all_acc[np.triu_indices(P, k=1)].max()
    sel = BestPairSelector().fit(X, y)
    assert set(sel.selected_indices().tolist()) == {41, 230}


def test_selection_refit_per_fold_does_not_leak() -> None:
    """Pure noise with random labels: selection inside LOO folds stays at chance, while the same
    selection fit once on all the data (the leak) looks far better than chance."""
    rng = np.random.default_rng(7)
    n = 32
    X = rng.normal(size=(n, P))
    y = rng.permutation(np.repeat([0, 1], n // 2))
    splits = make_splits(y, "loo")
    honest = {fs: Cell("noise", fs, "nb") for fs in ("cs15", "pair")}
    for preds, chosen in evaluate_folds(X, y, splits, feature_sets=["cs15", "pair"], classifiers=["nb"]):
        for (fs, _), (yt, yp) in preds.items():
            honest[fs].add(yt, yp)
    leaky_pair = select_indices("pair", X, y)  # searched on every sample, test ones included
    leaky = Cell("noise", "pair", "nb")
    from inspector.offline.texture.classifiers import make_pipeline

    for train, test in splits:
        pipe = make_pipeline("nb").fit(X[np.ix_(train, leaky_pair)], y[train])
        leaky.add(y[test], pipe.predict(X[np.ix_(test, leaky_pair)]))
    assert honest["pair"].accuracy <= 0.65 and honest["cs15"].accuracy <= 0.65
    assert leaky.accuracy >= 0.75  # the inflation the per-fold refit prevents


def test_selectors_reject_nan_and_single_class() -> None:
    X, y = _noise_with_planted(20, {}, seed=8)
    with pytest.raises(ValueError, match="two classes"):
        rank_features(X, np.zeros(20), "chi2")
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RankSelector("chi2").fit(X, y)
