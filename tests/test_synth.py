"""SynthMSA: layouts, determinism, speed, and above all that the generator does what it claims."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from msa_lib.data.schema import EMOTIONS, INTERACTION_TYPES, DataError, MSADataset
from msa_lib.data.synth import (
    TIME_PHRASES, SynthConfig, domain_split, make_synth, make_synth_with_truth, parse_clue, preset,
    synth_modalities_for_labels, synth_world,
)

SMALL = dict(n_train=300, n_valid=60, n_test=90, dims=(16, 5, 20))


def pool(sp, m):
    """Masked mean over time, which is how pooling baselines see a sequence."""
    x, mk = getattr(sp, m), sp.mask(m)
    return (x * mk[..., None]).sum(1) / mk.sum(1, keepdims=True)


def probe():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))


@pytest.fixture(scope="module")
def mosi_timed():
    t0 = time.perf_counter()
    ds = make_synth("mosi", seed=0)
    return ds, time.perf_counter() - t0


@pytest.fixture(scope="module")
def big():
    """A larger MOSI-like world (narrower text, for fast probes) with its hidden ground truth."""
    return make_synth_with_truth("mosi", seed=3, n_train=4000, n_valid=50, n_test=2000, dims=(128, 5, 20))


# -- layouts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, dims, L, sizes, rng, fam", [
    ("mosi", (768, 5, 20), 50, (1284, 229, 686), (-3.0, 3.0), "mosi"),
    ("mosei", (768, 74, 35), 50, (16326, 1871, 4659), (-3.0, 3.0), "mosei"),
    ("sims", (768, 33, 709), 39, (1368, 456, 457), (-1.0, 1.0), "sims"),
])
def test_presets_copy_real_layouts(name, dims, L, sizes, rng, fam):
    c = preset(name)
    assert c.dims == dims and c.seq_len == (L, L, L)
    assert (c.n_train, c.n_valid, c.n_test) == sizes
    assert c.label_range == rng and c.metric_family == fam and c.n_emotions == 6


def test_mosei_scale_and_overrides():
    c = preset("mosei", scale=0.01, seq_len=20)
    assert (c.n_train, c.n_valid, c.n_test) == (163, 19, 47) and c.seq_len == (20, 20, 20)
    ds = make_synth(c, n_train=40, n_valid=10, n_test=10, dims=(8, 74, 35))
    assert ds.name == "synth-mosei" and ds.metric_family == "mosei" and ds.dims == {"text": 8, "audio": 74, "vision": 35}


def test_sims_generates_in_range():
    ds = make_synth("sims", **SMALL)
    assert ds.label_range == (-1.0, 1.0) and ds.metric_family == "sims" and ds.seq_lens["text"] == 39
    for sp in ds.splits.values():
        assert sp.labels.min() >= -1 and sp.labels.max() <= 1


def test_full_mosi_dataset(mosi_timed):
    ds, secs = mosi_timed
    assert isinstance(ds, MSADataset) and ds.name == "synth-mosi" and ds.is_synthetic
    assert ds.sizes == {"train": 1284, "valid": 229, "test": 686}
    assert ds.dims == {"text": 768, "audio": 5, "vision": 20} and ds.seq_lens == {"text": 50, "audio": 50, "vision": 50}
    prov = ds.provenance
    assert prov["kind"] == "synthetic" and prov["source"] == "SynthMSA" and prov["seed"] == 0
    assert prov["clue_noise_swapped"] == 0
    json.dumps(prov)  # json-serialisable
    sp = ds.train
    for m in ("text", "audio", "vision"):
        assert getattr(sp, m).dtype == np.float32
        assert getattr(sp, f"{m}_lengths").dtype == np.int64
    assert sp.interaction.dtype == np.int64 and sp.domain.dtype == np.int64
    assert sp.emotions.shape == (1284, len(EMOTIONS)) and sp.cue_time.shape == (1284, 3)
    assert sp.audio_clue.shape == (1284,) and isinstance(sp.audio_clue[0], str)


def test_mosi_generation_is_fast(mosi_timed):
    _, first = mosi_timed
    t0 = time.perf_counter()
    make_synth("mosi", seed=1)
    second = time.perf_counter() - t0
    print(f"\nSynthMSA MOSI-size generation: {first:.3f} s, {second:.3f} s")
    assert min(first, second) < 3.0


# -- labels, lengths, cues -------------------------------------------------------------------------
def test_labels_look_like_mosi(mosi_timed):
    ds, _ = mosi_timed
    y = np.concatenate([sp.labels for sp in ds.splits.values()])
    assert y.dtype == np.float32 and y.min() >= -3 and y.max() <= 3
    assert 0.01 < (y == 0).mean() < 0.1  # some exact zeros
    assert np.allclose(y / 0.2, np.round(y / 0.2), atol=1e-4)  # multiples of 0.2
    assert 0.35 < (y > 0).mean() < 0.65 and 1.0 < y.std() < 2.0


def test_lengths_padding_and_cue_inside_valid_frames(big):
    ds, truth = big
    sp, tr = ds.train, truth["train"]
    for j, m in enumerate(("text", "audio", "vision")):
        ln = getattr(sp, f"{m}_lengths")
        assert ln.min() >= 0.6 * 50 - 1 and ln.max() <= 50
        pad = ~sp.mask(m)
        assert (getattr(sp, m)[pad] == 0).all()
        assert (tr["cue_frame"][:, j] >= 0).all() and (tr["cue_frame"][:, j] <= ln - 1).all()
        assert np.allclose(sp.cue_time[:, j], tr["cue_frame"][:, j] / ln, atol=1e-5)
    lag = tr["cue_frame"][:, 2] - tr["cue_frame"][:, 1]
    assert np.median(lag) == pytest.approx(preset("mosi").av_lag, abs=1e-6)


def test_interaction_mix_frequencies(big):
    ds, _ = big
    it = ds.train.interaction
    freq = np.bincount(it, minlength=5) / len(it)
    mix = preset("mosi").mix_vector()
    assert np.abs(freq - mix).max() < 0.03
    ds2 = make_synth("mosi", interaction_mix={"synergy": 1.0}, **SMALL)
    assert (ds2.train.interaction == INTERACTION_TYPES.index("synergy")).all()


# -- determinism ------------------------------------------------------------------------------------
def _fields(sp):
    return ("text", "audio", "vision", "labels", "emotions", "interaction", "domain", "cue_time",
            "audio_clue", "vision_clue", "text_lengths", "audio_lengths", "vision_lengths")


def test_same_seed_is_bit_identical_and_seeds_differ():
    kw = dict(SMALL, n_domains=3, domain_shift=1.0, clue_noise=0.3)
    a, b = make_synth("mosi", seed=7, **kw), make_synth("mosi", seed=7, **kw)
    for s in ("train", "valid", "test"):
        for f in _fields(a.split(s)):
            assert np.array_equal(getattr(a.split(s), f), getattr(b.split(s), f)), f
    c = make_synth("mosi", seed=8, **kw)
    for f in ("text", "audio", "vision", "labels"):
        assert not np.array_equal(getattr(a.train, f), getattr(c.train, f))
    # the world (cue directions) comes from config.seed; the samples from the seed argument
    w0, w1 = synth_world(preset("mosi", seed=0)), synth_world(preset("mosi", seed=1))
    assert not np.allclose(w0["directions"]["audio"], w1["directions"]["audio"])
    # changing the train size does not change the test split
    d = make_synth("mosi", seed=7, **dict(kw, n_train=123))
    assert np.array_equal(a.test.audio, d.test.audio)


def test_output_does_not_depend_on_thread_count(monkeypatch):
    import msa_lib.data.synth as synth
    kw = dict(n_train=300, n_valid=10, n_test=10, dims=(768, 5, 20), n_domains=2, domain_shift=1.0)
    monkeypatch.setattr(synth, "_n_threads", lambda: 1)
    one = make_synth("mosi", seed=4, **kw)
    monkeypatch.setattr(synth, "_n_threads", lambda: 3)
    three = make_synth("mosi", seed=4, **kw)
    assert np.array_equal(one.train.text, three.train.text)


# -- the mechanism ----------------------------------------------------------------------------------
def test_probes_recover_interaction_types(big):
    ds, _ = big
    tr, te = ds.train, ds.test
    feats = {m: (pool(tr, m), pool(te, m)) for m in ("text", "audio", "vision")}
    av = (np.concatenate([feats["audio"][0], feats["vision"][0]], 1),
          np.concatenate([feats["audio"][1], feats["vision"][1]], 1))
    acc = {}
    for k, name in enumerate(INTERACTION_TYPES):
        a = (tr.interaction == k) & (tr.labels != 0)
        b = (te.interaction == k) & (te.labels != 0)
        for m in ("text", "audio", "vision"):
            acc[name, m] = probe().fit(feats[m][0][a], tr.labels[a] > 0).score(feats[m][1][b], te.labels[b] > 0)
        inter = make_pipeline(StandardScaler(), PolynomialFeatures(2, include_bias=False), StandardScaler(),
                              LogisticRegression(C=0.05, max_iter=3000))
        acc[name, "audio*vision"] = inter.fit(av[0][a], tr.labels[a] > 0).score(av[1][b], te.labels[b] > 0)
    print("\n" + "\n".join(f"{k}: {v:.3f}" for k, v in acc.items()))
    chance = (0.40, 0.60)
    for uniq, m in (("uniq_text", "text"), ("uniq_audio", "audio"), ("uniq_vision", "vision")):
        assert acc[uniq, m] > 0.75
        for other in {"text", "audio", "vision"} - {m}:
            assert chance[0] < acc[uniq, other] < chance[1], (uniq, other)
    # synergy: invisible to each single modality, visible jointly through an interaction feature
    for m in ("text", "audio", "vision"):
        assert chance[0] < acc["synergy", m] < chance[1], m
    assert acc["synergy", "audio*vision"] > 0.75
    for m in ("text", "audio", "vision"):
        assert acc["redundancy", m] > 0.75


def test_synergy_messages_multiply_to_the_label(big):
    ds, truth = big
    sp, tr = ds.train, truth["train"]
    syn = sp.interaction == INTERACTION_TYPES.index("synergy")
    c = tr["messages"][syn]
    assert np.allclose(c[:, 1] * c[:, 2], tr["latent"][syn] / 3.0, atol=1e-5)
    nz = syn & (sp.labels != 0)
    for j in (1, 2):  # each alone: sign independent of the label's sign
        agree = (np.sign(tr["messages"][nz, j]) == np.sign(sp.labels[nz])).mean()
        assert 0.44 < agree < 0.56


def _domain_gap(shift):
    """Probe trained on domain 0; accuracy on domain 0 vs on the unseen domains 1-3 (pooled)."""
    ds = make_synth("mosi", seed=0, n_domains=4, domain_shift=shift, n_train=3000, n_valid=20, n_test=3000,
                    dims=(32, 5, 20))
    tr, te = ds.train, ds.test
    X = {s: np.concatenate([pool(sp, m) for m in ("text", "audio", "vision")], 1) for s, sp in (("tr", tr), ("te", te))}
    a = (tr.domain == 0) & (tr.labels != 0)
    clf = probe().fit(X["tr"][a], tr.labels[a] > 0)
    b_in, b_out = (te.domain == 0) & (te.labels != 0), (te.domain > 0) & (te.labels != 0)
    return clf.score(X["te"][b_in], te.labels[b_in] > 0), clf.score(X["te"][b_out], te.labels[b_out] > 0)


def test_domain_shift_hurts_a_probe_trained_on_domain_0():
    in0, out0 = _domain_gap(0.0)
    in2, out2 = _domain_gap(2.0)
    print(f"\nshift 0: {in0:.3f} -> {out0:.3f}; shift 2: {in2:.3f} -> {out2:.3f}")
    assert abs(in0 - out0) < 0.05
    assert in2 - out2 > 0.1


def test_domain_zero_is_undistorted_and_domain_split():
    w = synth_world(preset("mosi", n_domains=3, domain_shift=2.0))
    assert np.allclose(w["rotation"]["text"][0], np.eye(4)) and np.allclose(w["scale"]["audio"][0], 1)
    assert np.allclose(w["offset"]["vision"][0], 0) and w["noise_mult"][0] == 1
    assert np.allclose(w["mix"][0], preset("mosi").mix_vector())
    assert not np.allclose(w["rotation"]["text"][1], np.eye(4))
    ds = make_synth("mosi", n_domains=3, domain_shift=1.0, **SMALL)
    dg = domain_split(ds, [0, 1], [2])
    assert set(np.unique(dg.train.domain)) <= {0, 1} and set(np.unique(dg.valid.domain)) <= {0, 1}
    assert set(np.unique(dg.test.domain)) == {2}
    assert dg.provenance["domain_split"] == {"train_domains": [0, 1], "test_domains": [2]}
    with pytest.raises(DataError, match="domain"):
        domain_split(ds, [0], [7])


# -- emotions and explanations -------------------------------------------------------------------------
def test_emotions_follow_sentiment(big):
    ds, _ = big
    e, y = ds.train.emotions, ds.train.labels
    assert e.dtype == np.float32 and e.min() >= 0 and e.max() <= 3
    assert (e == 0).mean() > 0.3  # many absent emotions
    corr = [np.corrcoef(e[:, k], y)[0, 1] for k in range(6)]
    assert corr[EMOTIONS.index("happy")] > 0.4 and corr[EMOTIONS.index("sad")] < -0.4
    for k in ("anger", "disgust", "fear"):
        assert corr[EMOTIONS.index(k)] < -0.2
    assert abs(corr[EMOTIONS.index("surprise")]) < 0.1


def _expected_level(msg):
    a = np.abs(msg)
    mag = np.where(a < 0.1, 0, np.where(a < 0.5, 1, 2))
    return np.sign(msg).astype(int) * mag


def test_clues_describe_the_cue(big):
    ds, truth = big
    sp, tr = ds.train, truth["train"]
    for j, m in ((1, "audio"), (2, "vision")):
        clues = getattr(sp, f"{m}_clue")
        assert (parse_clue(clues, m) == _expected_level(tr["messages"][:, j])).all()
        t = np.clip((sp.cue_time[:, j] * 3).astype(int), 0, 2)
        assert all(c.endswith(TIME_PHRASES[k]) for c, k in zip(clues[:200], t[:200]))
    assert len(set(sp.audio_clue)) > 20


def test_clue_noise_swaps_polarity():
    ds, truth = make_synth_with_truth("mosi", clue_noise=1.0, **SMALL)
    sp, tr = ds.train, truth["train"]
    assert ds.provenance["clue_noise_swapped"] == 2 * (300 + 60 + 90)
    for j, m in ((1, "audio"), (2, "vision")):
        got, want = parse_clue(getattr(sp, f"{m}_clue"), m), _expected_level(tr["messages"][:, j])
        nz = want != 0
        assert (got[nz] == -want[nz]).all()
        assert (np.abs(got[~nz]) == 1).all()  # neutral cues get a mild polar description
    ds, truth = make_synth_with_truth("mosi", clue_noise=0.25, **SMALL)
    assert truth["train"]["clue_swapped"].mean(0).tolist() == [0.25, 0.25]
    with pytest.raises(DataError):
        parse_clue(["not a template"], "audio")


# -- semi-synthetic -----------------------------------------------------------------------------------
def test_modalities_for_given_labels_are_aligned():
    rng = np.random.default_rng(0)
    y = np.round(rng.uniform(-3, 3, 1500) / 0.2) * 0.2
    y[:50] = 0.0
    out = synth_modalities_for_labels(y, "mosi", seed=0, split="train")
    n = len(y)
    assert out["audio"].shape == (n, 50, 5) and out["vision"].shape == (n, 50, 20)
    assert out["audio"].dtype == np.float32 and out["audio_lengths"].shape == (n,)
    assert out["interaction"].shape == (n,) and out["emotions"].shape == (n, 6)
    assert out["cue_time"].shape == (n, 3) and np.isnan(out["cue_time"][:, 0]).all()
    assert out["audio_clue"].shape == (n,) and out["provenance"]["kind"] == "semi-synthetic"
    json.dumps(out["provenance"])
    # the audio carries the given label where the interaction says it should
    u = synth_world(preset("mosi"))["directions"]["audio"]
    mk = np.arange(50)[None] < out["audio_lengths"][:, None]
    proj = ((out["audio"] * mk[..., None]).sum(1) / mk.sum(1, keepdims=True)) @ u
    carry = np.isin(out["interaction"], [INTERACTION_TYPES.index("uniq_audio"), INTERACTION_TYPES.index("redundancy")])
    assert np.corrcoef(proj[carry], y[carry])[0, 1] > 0.6
    assert abs(np.corrcoef(proj[~carry & (out["interaction"] != 3)], y[~carry & (out["interaction"] != 3)])[0, 1]) < 0.15
    assert np.corrcoef(out["emotions"][:, 0], y)[0, 1] > 0.4
    again = synth_modalities_for_labels(y, "mosi", seed=0, split="train")
    other = synth_modalities_for_labels(y, "mosi", seed=0, split="test")
    assert np.array_equal(out["audio"], again["audio"]) and not np.array_equal(out["audio"], other["audio"])
    with pytest.raises(DataError, match="label range"):
        synth_modalities_for_labels(np.array([0.0, 3.5]), "mosi")
    with pytest.raises(DataError, match="NaN"):
        synth_modalities_for_labels(np.array([0.0, np.nan]), "mosi")


# -- config validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    dict(interaction_mix={"uniq_smell": 1.0}), dict(av_lag=-1), dict(clue_noise=1.5), dict(n_emotions=7),
    dict(ar_coef=1.0), dict(cue_strength={"text": 1.0}), dict(domain_shift=-0.1), dict(label_range=(0, 3)),
])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError):
        preset("mosi", **bad)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="preset"):
        preset("iemocap")
    with pytest.raises(ValueError, match="field"):
        preset("mosi", colour="red")
    assert isinstance(preset("mosi"), SynthConfig)
