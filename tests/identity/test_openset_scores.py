"""Open-set scores and calibration on embeddings (no model): checked against scipy / scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from scipy.special import logsumexp, softmax
from sklearn.neighbors import NearestNeighbors

from inspector.identity.openset import (
    aggregate_scores, energy_score, knn_score, l2_normalise, mahalanobis_all, mahalanobis_score, msp_score,
)
from inspector.offline.identity.openset_fit import (
    Embeddings, calibrate, conformal_quantile, drift_statistic, frame_scores, permutation_drift_threshold,
)
from inspector.offline.identity.openset_eval import auroc, fpr_at_tpr

RNG = np.random.default_rng(7)


def test_msp_and_energy_match_scipy():
    logits = RNG.normal(size=(12, 5)) * 3
    p = softmax(logits, axis=1)
    assert np.allclose(msp_score(p), 1 - p.max(1))
    assert np.allclose(energy_score(logits), -logsumexp(logits, axis=1))
    # energy is not shift-invariant (unlike the softmax): larger logits = more "known"
    assert np.all(energy_score(logits + 4) < energy_score(logits))


def test_mahalanobis_matches_scipy():
    x = RNG.normal(size=(7, 6))
    mu = RNG.normal(size=(3, 6))
    a = RNG.normal(size=(6, 6))
    prec = np.linalg.inv(a @ a.T + np.eye(6))
    d = mahalanobis_all(x, mu, prec)
    ref = np.array([[mahalanobis(xi, m, prec) ** 2 for m in mu] for xi in x])
    assert np.allclose(d, ref)
    assert np.allclose(mahalanobis_score(x, mu, prec), ref.min(1))


@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_scikit_learn(k):
    bank = l2_normalise(RNG.normal(size=(300, 16)))
    q = RNG.normal(size=(9, 16))
    ref = NearestNeighbors(n_neighbors=k).fit(bank).kneighbors(l2_normalise(q))[0][:, -1]
    assert np.allclose(knn_score(q, bank, k), ref, atol=1e-6)


def test_aggregations():
    s = np.arange(10.0)
    assert aggregate_scores(s, "mean") == 4.5 and aggregate_scores(s, "max") == 9.0
    assert aggregate_scores(s, "q90") == pytest.approx(np.quantile(s, 0.9))
    with pytest.raises(ValueError):
        aggregate_scores(s, "median")


def test_conformal_quantile_bounds_the_rejection_rate():
    # exchangeable known scores: a new one exceeds the threshold with probability <= 1 - q
    exceed = []
    for r in range(300):
        s = np.random.default_rng(r).normal(size=101)
        exceed.append(s[100] > conformal_quantile(s[:100], 0.95))
    assert np.mean(exceed) <= 0.05 + 0.03


def _gaussian_embeddings(n_frames_per_class: int, centres: np.ndarray, seed: int, tiles: int = 6) -> Embeddings:
    rng = np.random.default_rng(seed)
    c, d = centres.shape
    pooled, tf, fl = [], [], []
    for ci in range(c):
        for _ in range(n_frames_per_class):
            frame_shift = rng.normal(scale=0.3, size=d)
            pooled.append(centres[ci] + frame_shift + rng.normal(size=(tiles, d)))
            tf.append(np.full(tiles, len(fl)))
            fl.append(ci)
    x = np.concatenate(pooled).astype(np.float32)
    logits = -((x[:, None, :] - centres[None]) ** 2).sum(-1) / 10  # a nearest-centre "classifier"
    return Embeddings(x, softmax(logits, 1).astype(np.float32), logits.astype(np.float32), np.concatenate(tf),
                      np.array(fl), [f"c{i}" for i in range(c)], [f"f{i}.png" for i in range(len(fl))])


def test_calibration_separates_a_far_unknown_class_and_keeps_known_rejections_low():
    centres = RNG.normal(scale=4.0, size=(4, 12))
    known = _gaussian_embeddings(60, centres, 1)
    test = _gaussian_embeddings(30, centres, 2)
    unknown = _gaussian_embeddings(40, RNG.normal(scale=4.0, size=(1, 12)) + 6.0, 3)
    arrays, block = calibrate(known, ["c0", "c1", "c2", "c3"], method="mahalanobis", drift_dims=8, k=5)
    assert block["holdout_frames"] == 72 and block["fit_frames"] == 168
    assert set(block["thresholds"]) == {"msp", "energy", "mahalanobis", "knn"}
    sk, su = frame_scores(test, arrays, 5), frame_scores(unknown, arrays, 5)
    for m in ("mahalanobis", "knn"):
        t = block["thresholds"][m]["mean"]
        assert np.mean(sk[m]["mean"] > t) <= 0.06, m  # ~1.4 % expected (72 held out); 120 test frames
        assert np.mean(su[m]["mean"] <= t) <= 0.05, m
        assert auroc(sk[m]["mean"], su[m]["mean"]) > 0.95
        assert fpr_at_tpr(sk[m]["mean"], su[m]["mean"]) < 0.1
    assert arrays["pca_proj"].shape == (12, 8) and arrays["drift_means"].shape == (4, 8)
    assert block["drift"]["threshold"] > 0


def test_drift_statistic_and_permutation_threshold():
    z = RNG.normal(size=(400, 4))
    prec = np.eye(4)
    assert drift_statistic(z[:10], np.zeros(4), prec) == pytest.approx(10 * np.sum(z[:10].mean(0) ** 2))
    assert drift_statistic(z[:10], np.zeros(4), prec, 10) == pytest.approx(5 * np.sum(z[:10].mean(0) ** 2))
    thr, by_n = permutation_drift_threshold(z, np.zeros(400, int), prec, q=0.99, seed=1)
    # |lot mean - rest mean|^2 / (1/n + 1/n_rest) of standard normals is chi2(4): 99 % quantile 13.28
    assert 10.0 < thr < 17.0 and set(by_n) == {"8", "16", "24"}
    # a class with 6 frames only: pseudo-lots of 3
    assert set(permutation_drift_threshold(z[:6], np.zeros(6, int), prec, q=0.99)[1]) == {"3"}
    shifted = z[:20] + 1.0
    assert drift_statistic(shifted, np.zeros(4), prec) > thr


def test_evaluation_and_report_on_embeddings(tmp_path):
    """One LOCO-style split with the linear probe, then the Markdown/CSV/PNG report."""
    from inspector.offline.identity.openset_eval import evaluate_once, keep_labels, summarise
    from inspector.offline.identity.openset_report import write_report

    centres = RNG.normal(scale=4.0, size=(5, 12))
    emb = _gaussian_embeddings(40, centres, 9)
    known = keep_labels(emb, [0, 1, 2, 3])
    unknown = {"c4": keep_labels(emb, [4])}
    kw = {"method": "mahalanobis", "aggregation": "mean", "quantile": 0.99, "k": 5, "bank_size": 512,
          "drift_dims": 6, "holdout": 0.3}
    run = evaluate_once(known, unknown, kw, 0, probe=True)
    rows = run["sets"]["c4"]["rows"]
    assert set(rows) == {f"{m}/{a}" for m in ("msp", "energy", "mahalanobis", "knn") for a in ("mean", "q90", "max")} | {
        "today/min_confidence"}
    assert rows["mahalanobis/mean"]["auroc"] > 0.95 and run["frame_accuracy"] > 0.9
    summary = summarise([run, run])
    assert summary["c4"]["rows"]["knn/mean"]["auroc"] == (rows["knn/mean"]["auroc"], 0.0)
    files = write_report([{"name": "LOCO gaussian: unknown = c4", "kind": "loco", "known_frames": run["known_frames"],
                           "summary": summary, "example": run, "frame_accuracy": run["frame_accuracy"]}],
                         {"model": "m/1", "model_sha256": "ab" * 32, "backbone": "none", "command": "test",
                          "calibration": kw, "repeats": 2, "group_prefix": False}, tmp_path)
    text = files["report"].read_text()
    assert "| mahalanobis/mean" in text and "fewest accepted" in text
    png = next(p for k, p in files.items() if k.startswith("hist:"))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(files["csv"].read_text().splitlines()) == 1 + 13


def test_openset_check_agrees_with_score_and_nearest_class(tmp_path):
    """The inspection's one-pass check == the separate score and nearest-class functions."""
    from inspector.identity.openset import OpenSet

    centres = RNG.normal(scale=4.0, size=(3, 10))
    emb = _gaussian_embeddings(20, centres, 4)
    arrays, block = calibrate(emb, ["c0", "c1", "c2"], drift_dims=4)
    np.savez(tmp_path / "o.npz", **arrays)
    for method in ("mahalanobis", "knn", "energy"):
        os_ = OpenSet.load(tmp_path / "o.npz", {**block, "method": method}, 3)
        t = emb.tile_frame == 5
        s, near = os_.check(emb.probs[t], emb.logits[t], emb.pooled[t])
        assert s == pytest.approx(os_.score(emb.probs[t], emb.logits[t], emb.pooled[t]))
        assert near == os_.nearest_class(emb.pooled[t])[0] == emb.frame_labels[5]
