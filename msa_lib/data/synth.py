"""SynthMSA: a synthetic multimodal sentiment benchmark whose ground truth is known.

Why it exists
-------------
The four papers make claims about *mechanisms*, and real benchmarks cannot check them:

* "I2MoE's experts specialise by interaction type" needs the true interaction type of every sample.
  No real corpus records whether a clip's sentiment lives in the words, in the voice, in both
  (redundancy) or only in their combination (synergy).
* "MIDG generalises to unseen domains" needs domains whose shift strength can be varied.
* "Explanations help TEXT" needs explanations whose quality can be varied.
* "MMoLRE's shared and task-specific experts resolve sentiment/emotion conflicts" needs emotions
  that partly agree and partly conflict with sentiment in a known way.

SynthMSA writes all of this into the data, with the real feature widths, sequence lengths, split
sizes and label ranges of MOSI, MOSEI and CH-SIMS, so the same models and notebooks run on it
unchanged. It is fast (MOSI size in a fraction of a second) and bit-identical per seed.

The generative model, per sample
--------------------------------
1. **Domain** ``domain ~ Uniform{0..n_domains-1}``.
2. **Latent sentiment** ``s`` in ``label_range``: with probability ``zero_frac`` exactly 0, otherwise a
   random sign times ``hi * Beta(1.5, 1.8)``, rounded to ``label_grid`` (0.2, like the averaged MOSI
   annotations). The observed label is ``s`` plus optional ``label_noise``, clipped and re-rounded.
3. **Interaction type** ``k ~ Categorical(mix_domain)`` over ``INTERACTION_TYPES``.
4. **Messages**: one scalar per modality, ``c = (c_text, c_audio, c_vision)`` in [-1, 1]. With
   ``z = s / hi`` and independent *nuisance* values ``n_m`` (drawn from the same distribution as z):

   ==============  ================  ====================  ====================
   type            text              audio                 vision
   ==============  ================  ====================  ====================
   ``uniq_text``   z                 n_a                   n_v
   ``uniq_audio``  n_t               z                     n_v
   ``uniq_vision`` n_t               n_a                   z
   ``redundancy``  z                 z                     z
   ``synergy``     n_t               e * sqrt(|z|)         e * sign(z) * sqrt(|z|)
   ==============  ================  ====================  ====================

   Synergy always uses the **audio-vision pair** (e is a fair random sign). Then
   ``c_audio * c_vision = z`` exactly, so the two together determine s. Alone, each reveals
   only |s|, never its sign. The sign of s is drawn independently of its magnitude, so
   ``E[s | c_audio] = E[s | c_vision] = E[s]``: no model of one modality, linear or not,
   beats chance on the polarity. Text carries a nuisance value, so
   synergy is invisible to every single modality.
5. **Sequences**: for each modality m, the background is AR(1) noise along time, with coefficient
   ``ar_coef`` and stationary std ``noise * domain noise multiplier``. The innovations are uniform
   with unit variance, because uniform draws are about 4x faster than Gaussian ones. After the
   AR filter, and certainly after pooling over time, the marginals are close to Gaussian. A cue is
   added on top: a Gaussian bump in time, centred at ``tau_m`` with std ``cue_width`` frames,
   along a fixed random unit direction ``u_m``, with amplitude
   ``cue_strength[m] * reliability[domain, m] * c_m``. The message enters the features only
   through this cue. Mean pooling over the valid frames keeps a fraction of about
   ``cue_width * sqrt(2 pi) / length`` of it, so pooling baselines can still read it.
   The vision cue comes ``av_lag`` vision frames after the audio cue (at the same relative
   position when the streams have different lengths). Each sample has a random valid length, a
   fraction in ``[min_len_frac, 1]`` of L, shared by the three streams, with right zero-padding.
   The cue always lies inside the valid frames.
6. **Domain distortion**, applied to the finished features of domain ``d > 0``. First, a rotation
   turns the cue direction u_m towards a random, domain-specific direction w_{m,d} by an angle
   ``2 * arctan(domain_shift / 4)``: 28 deg at shift 1, 53 deg at 2, 90 deg at 4. The plane is
   (u_m, w_{m,d}), with w_{m,d} drawn in a fixed 4-d subspace that contains u_m. In every
   domain the cue keeps a component ``cos(angle)`` along u_m, and that component is the
   domain-invariant part. Then come a per-dimension scale ``exp(0.3 * shift * g)`` and a
   per-dimension offset ``0.5 * shift * noise * g``. Each domain also has its own noise multiplier
   ``exp(0.2 * shift * |g|) >= 1`` and modality reliabilities ``exp(-0.3 * shift * |g|) <= 1``
   (these multiply the cue strength). So a shifted domain is never cleaner than the reference,
   and accuracy falls with the shift on average. Each domain also has an interaction mix whose
   logits are perturbed by ``0.3 * shift * g``.
   **Domain 0 is the undistorted, clean reference domain** ("studio"), whatever ``domain_shift`` is. With
   ``domain_shift = 0`` all domains are identical. Domain parameters are drawn per domain index
   from the config seed, so they do not change when ``n_domains`` grows, and ``shift`` scales
   fixed random directions, so accuracy-vs-shift curves compare one world at several strengths.
7. **Emotions** (happy, sad, anger, surprise, disgust, fear): the intensity is
   ``base_k + load_k * z + emotion_shared * a_k * g0 + emotion_specific * g_k``, clipped to
   [0, 3] and rounded to 1/3 (MOSEI intensities average three annotators on a 0-3 scale). The
   loadings are happy +, sad/anger/disgust/fear -, surprise 0. ``g0`` is one "arousal" factor
   shared by all six emotions with positive weights ``a_k``; it raises happy and anger together,
   which gives a real conflict with sentiment. ``g_k`` are emotion-specific factors. Many
   intensities are exactly 0 (emotion absent).
8. **Explanations**: each of the audio and vision cues gets a template sentence. Its content comes
   from the cue's message: polarity and intensity, in five bins (strong -, mild -, neutral, mild +,
   strong +). Its timing phrase comes from the cue time (early, middle or late in the clip), e.g.
   "the voice grows louder and rises late in the clip". A clue describes the cue that is in the
   stream, nuisance or not, so it never leaks the label beyond what the stream carries. It is a
   *noise-free* reading of the stream. A ``clue_noise`` fraction of the clues (chosen exactly,
   independently for audio and vision) are swapped for a template of the opposite polarity. A
   neutral cue becomes a mild positive or mild negative one at random.

Seeds
-----
``SynthConfig.seed`` fixes the *world*: the cue directions and every domain's distortion.
The ``seed`` argument of :func:`make_synth` fixes the *samples* drawn from that world. Each split
and each modality uses its own child stream, so changing ``n_train`` does not change the test set,
and changing the text width does not change audio or vision.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .schema import EMOTIONS, INTERACTION_TYPES, MODALITIES, SPLITS, DataError, MSADataset, Split

__all__ = [
    "SynthConfig", "PRESETS", "preset", "make_synth", "make_synth_with_truth",
    "synth_modalities_for_labels", "domain_split", "synth_world", "parse_clue",
    "AUDIO_TEMPLATES", "VISION_TEMPLATES", "TIME_PHRASES", "EMOTION_LOADINGS",
]

_DEFAULT_MIX = {"uniq_text": 0.25, "uniq_audio": 0.15, "uniq_vision": 0.15, "synergy": 0.20, "redundancy": 0.25}
_DEFAULT_CUE = {"text": 6.0, "audio": 5.0, "vision": 5.0}


@dataclass
class SynthConfig:
    """Every knob of the SynthMSA generator (the model is in the module docstring).

    Layout:
        name: preset name; the dataset is called ``synth-<name>``.
        dims: feature widths (text, audio, vision).
        seq_len: padded sequence lengths L (text, audio, vision), in frames.
        n_train, n_valid, n_test: split sizes.
        label_range: ``(-hi, hi)``, the range of the regression label (must be symmetric).
        metric_family: which METRICS.md definitions apply (mosi | mosei | sims).
    Labels:
        label_grid: labels are multiples of this (0.2 like MOSI; 0 disables rounding).
        zero_frac: probability that the latent sentiment is exactly 0. Rounding to the grid adds
            about 1.3 % more on [-3, 3], about 9 % on [-1, 1].
        label_noise: std of the annotator noise added to the observed label, as a fraction of hi.
            The features follow the latent sentiment, so this noise cannot be learned.
    Interactions and cues:
        interaction_mix: unnormalised probability per type in INTERACTION_TYPES. Missing keys
            count as 0. Default: uniq_text .25, uniq_audio .15, uniq_vision .15, synergy .20,
            redundancy .25.
        cue_strength: per modality, the peak cue amplitude for a message of 1, in units of the
            background std. Default: text 6, audio 5, vision 5.
        noise: stationary std of the background noise (domain 0).
        ar_coef: AR(1) coefficient of the background along time, in [0, 1).
        cue_width: std of the Gaussian cue bump, in frames.
        av_lag: delay of the vision cue after the audio cue, in vision frames, >= 0.
        min_len_frac: valid length ~ Uniform[min_len_frac, 1] * L, then right zero-padding.
    Domains:
        n_domains: number of domains. Domain 0 is always the undistorted reference.
        domain_shift: strength of the per-domain distortion, >= 0. At 0 all domains are
            identical. Rotation angle 2 arctan(shift / 4), scale exp(0.3 shift g), offset
            0.5 shift noise g, noise multiplier exp(0.2 shift |g|), reliability
            exp(-0.3 shift |g|), mix logits + 0.3 shift g. For a linear probe, the useful range
            is about [0, 2].
    Emotions:
        n_emotions: fixed at 6 (happy, sad, anger, surprise, disgust, fear).
        emotion_shared: weight of the shared "arousal" factor, which conflicts with sentiment.
        emotion_specific: weight of the independent emotion-specific factors.
    Explanations:
        clue_noise: the exact fraction of audio and vision explanations swapped for a
            wrong-polarity template, in [0, 1].
    Seed:
        seed: the *world* seed, which fixes the cue directions and the domain distortions.
            The samples come from the ``seed`` argument of `make_synth`.
    """

    name: str = "mosi"  # preset name; the dataset is called ``synth-<name>``
    dims: tuple[int, int, int] = (768, 5, 20)  # feature width of text / audio / vision
    seq_len: tuple[int, int, int] = (50, 50, 50)  # padded length L of text / audio / vision [frames]
    n_train: int = 1284  # samples in the train split
    n_valid: int = 229  # samples in the valid split
    n_test: int = 686  # samples in the test split
    label_range: tuple[float, float] = (-3.0, 3.0)  # (lo, hi) of the regression label; symmetric
    label_grid: float = 0.2  # labels are multiples of this (0 disables rounding) [label units]
    zero_frac: float = 0.03  # P(latent sentiment is exactly 0); rounding adds ~1.3 % more (MOSI: 4.4 %)
    label_noise: float = 0.0  # std of annotator noise added to the observed label [fraction of hi]
    interaction_mix: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_MIX))
    # ^ probability of each interaction type (normalised); keys from INTERACTION_TYPES, missing = 0
    cue_strength: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_CUE))
    # ^ peak cue amplitude per modality for a message of 1 [units of the background noise std]
    noise: float = 1.0  # stationary std of the background noise (domain 0)
    ar_coef: float = 0.5  # AR(1) coefficient of the background along time, in [0, 1)
    cue_width: float = 3.0  # std of the Gaussian cue bump [frames]
    av_lag: float = 2.0  # delay of the vision cue after the audio cue, >= 0 [vision frames]
    min_len_frac: float = 0.6  # valid length ~ Uniform[min_len_frac, 1] * L, then zero-padding
    n_domains: int = 1  # number of domains; domain 0 is always the undistorted reference
    domain_shift: float = 0.0  # strength of the per-domain distortion, >= 0 (0: domains identical)
    n_emotions: int = 6  # fixed: happy, sad, anger, surprise, disgust, fear
    emotion_shared: float = 0.5  # weight of the shared "arousal" factor in every emotion
    emotion_specific: float = 0.5  # weight of the emotion-specific factors
    clue_noise: float = 0.0  # fraction of audio / vision explanations swapped for a wrong one, [0, 1]
    seed: int = 0  # world seed: cue directions and domain distortions (samples use make_synth's seed)
    metric_family: str = "mosi"  # which METRICS.md definitions apply: mosi | mosei | sims

    def __post_init__(self) -> None:
        self.dims = tuple(int(d) for d in self.dims)
        self.seq_len = tuple(int(v) for v in self.seq_len)
        self.label_range = tuple(float(v) for v in self.label_range)
        self.interaction_mix = {str(k): float(v) for k, v in dict(self.interaction_mix).items()}
        self.cue_strength = {str(k): float(v) for k, v in dict(self.cue_strength).items()}
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the knob when a value is invalid."""
        def bad(msg: str) -> None:
            raise ValueError(f"SynthConfig: {msg}")
        if len(self.dims) != 3 or min(self.dims) < 1:
            bad(f"dims must be three positive ints (text, audio, vision); found {self.dims}")
        if len(self.seq_len) != 3 or min(self.seq_len) < 3:
            bad(f"seq_len must be three ints >= 3 (text, audio, vision); found {self.seq_len}")
        for k in ("n_train", "n_valid", "n_test"):
            if int(getattr(self, k)) < 1:
                bad(f"{k} must be >= 1; found {getattr(self, k)}")
        lo, hi = self.label_range
        if not (hi > 0 and abs(lo + hi) < 1e-9):
            bad(f"label_range must be symmetric (-hi, hi) with hi > 0; found {self.label_range}")
        unknown = set(self.interaction_mix) - set(INTERACTION_TYPES)
        if unknown:
            bad(f"interaction_mix has unknown type(s) {sorted(unknown)}; expected keys from {INTERACTION_TYPES}")
        if any(v < 0 for v in self.interaction_mix.values()) or sum(self.interaction_mix.values()) <= 0:
            bad(f"interaction_mix needs non-negative weights with a positive sum; found {self.interaction_mix}")
        unknown = set(self.cue_strength) - set(MODALITIES)
        if unknown or set(self.cue_strength) != set(MODALITIES):
            bad(f"cue_strength needs exactly the keys {MODALITIES}; found {sorted(self.cue_strength)}")
        if any(v < 0 for v in self.cue_strength.values()):
            bad(f"cue_strength values must be >= 0; found {self.cue_strength}")
        if not 0 <= self.ar_coef < 1:
            bad(f"ar_coef must lie in [0, 1); found {self.ar_coef}")
        if self.noise <= 0 or self.cue_width <= 0:
            bad(f"noise and cue_width must be > 0; found noise={self.noise}, cue_width={self.cue_width}")
        if self.av_lag < 0:
            bad(f"av_lag must be >= 0 (vision follows audio); found {self.av_lag}")
        if not 0 < self.min_len_frac <= 1:
            bad(f"min_len_frac must lie in (0, 1]; found {self.min_len_frac}")
        if self.n_domains < 1 or self.domain_shift < 0:
            bad(f"n_domains must be >= 1 and domain_shift >= 0; found {self.n_domains}, {self.domain_shift}")
        if self.n_emotions != len(EMOTIONS):
            bad(f"n_emotions is fixed at {len(EMOTIONS)} ({', '.join(EMOTIONS)}); found {self.n_emotions}")
        if not 0 <= self.clue_noise <= 1:
            bad(f"clue_noise must lie in [0, 1]; found {self.clue_noise}")
        if not 0 <= self.zero_frac < 1 or self.label_noise < 0 or self.label_grid < 0:
            bad("zero_frac must lie in [0, 1), label_noise and label_grid must be >= 0")

    @property
    def hi(self) -> float:
        return float(self.label_range[1])

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": int(self.n_train), "valid": int(self.n_valid), "test": int(self.n_test)}

    def mix_vector(self) -> np.ndarray:
        """The interaction mix as a normalised (5,) vector in INTERACTION_TYPES order."""
        v = np.array([self.interaction_mix.get(k, 0.0) for k in INTERACTION_TYPES], dtype=np.float64)
        return v / v.sum()


# Real layouts (MMSA feature pickles): dims, padded length, split sizes, label range, metric family.
PRESETS: dict[str, dict[str, Any]] = {
    "mosi": dict(dims=(768, 5, 20), seq_len=(50, 50, 50), n_train=1284, n_valid=229, n_test=686,
                 label_range=(-3.0, 3.0), metric_family="mosi"),
    "mosei": dict(dims=(768, 74, 35), seq_len=(50, 50, 50), n_train=16326, n_valid=1871, n_test=4659,
                  label_range=(-3.0, 3.0), metric_family="mosei"),
    "sims": dict(dims=(768, 33, 709), seq_len=(39, 39, 39), n_train=1368, n_valid=456, n_test=457,
                 label_range=(-1.0, 1.0), metric_family="sims"),
}


def preset(name: str, scale: float = 1.0, **overrides: Any) -> SynthConfig:
    """A `SynthConfig` with the real layout of ``name`` (mosi | mosei | sims).

    ``scale`` multiplies the three split sizes (at least 1 sample each); it is meant for MOSEI
    (22,856 samples x 50 x 768 floats is 3.5 GB of text features), but works for every preset.
    ``seq_len`` may be given as one int (all streams) or three. Other keywords override fields.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown SynthMSA preset {name!r}; expected one of {sorted(PRESETS)}")
    kw: dict[str, Any] = dict(PRESETS[name])
    kw["name"] = name
    if scale != 1.0:
        if scale <= 0:
            raise ValueError(f"scale must be > 0; found {scale}")
        for k in ("n_train", "n_valid", "n_test"):
            kw[k] = max(1, int(round(kw[k] * scale)))
    if "seq_len" in overrides and np.ndim(overrides["seq_len"]) == 0:
        overrides["seq_len"] = (int(overrides["seq_len"]),) * 3
    unknown = set(overrides) - {f.name for f in fields(SynthConfig)}
    if unknown:
        raise ValueError(f"unknown SynthConfig field(s) {sorted(unknown)}")
    kw.update(overrides)
    return SynthConfig(**kw)


# ---------------------------------------------------------------------------------------------
# Explanation templates: [bin][variant], bins = strong -, mild -, neutral, mild +, strong +.
AUDIO_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("the voice drops low and turns harsh", "the speaker sighs heavily", "the pitch falls sharply in a tense tone"),
    ("the voice softens and dips slightly", "the tone turns a little flat and tired", "the speaker hesitates and mutters"),
    ("the voice stays level and even", "the tone remains flat and steady", "the speaker talks at an even pace"),
    ("the voice brightens slightly", "the tone turns a little warmer", "the pitch lifts a bit"),
    ("the voice grows louder and rises", "the speaker laughs warmly", "the pitch jumps up with excitement"),
)
VISION_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("the speaker frowns deeply", "the speaker shakes the head in disapproval", "the speaker grimaces"),
    ("the speaker frowns briefly", "the speaker glances away", "the brow tightens slightly"),
    ("the speaker's face stays neutral", "the speaker keeps a still expression", "the speaker looks ahead calmly"),
    ("the speaker smiles faintly", "the speaker's face relaxes slightly", "the corners of the mouth lift a little"),
    ("the speaker smiles broadly", "the speaker's eyes light up with a wide grin", "the speaker nods enthusiastically"),
)
TIME_PHRASES = ("early in the clip", "in the middle of the clip", "late in the clip")
_CLUE_LEVELS = np.array([-2, -1, 0, 1, 2])  # bin index -> signed intensity level


def _sentence_table(templates: tuple[tuple[str, ...], ...]) -> np.ndarray:
    """(5 bins, n variants, 3 times) array of full sentences (numpy unicode, for vectorised indexing)."""
    return np.array([[[f"{t} {p}" for p in TIME_PHRASES] for t in row] for row in templates])


_SENTENCES = {"audio": _sentence_table(AUDIO_TEMPLATES), "vision": _sentence_table(VISION_TEMPLATES)}
_SENTENCE_LEVEL = {m: {str(s): int(_CLUE_LEVELS[b]) for b in range(5) for s in tab[b].ravel()}
                   for m, tab in _SENTENCES.items()}


def parse_clue(clues: np.ndarray | list[str], modality: str) -> np.ndarray:
    """Recover the signed intensity level (-2 strong -, -1 mild -, 0 neutral, 1, 2) of template clues.

    Raises ``DataError`` for a string that is not a SynthMSA template of ``modality``.
    """
    if modality not in _SENTENCE_LEVEL:
        raise ValueError(f"modality must be 'audio' or 'vision'; found {modality!r}")
    table = _SENTENCE_LEVEL[modality]
    try:
        return np.array([table[str(c)] for c in np.asarray(clues).ravel()], dtype=np.int64)
    except KeyError as e:
        raise DataError(f"parse_clue: {e.args[0]!r} is not a SynthMSA {modality} template") from None


# Emotion model (EMOTIONS order: happy, sad, anger, surprise, disgust, fear).
EMOTION_LOADINGS = np.array([2.4, -2.0, -1.6, 0.0, -1.4, -1.0])  # intensity per unit of z = s / hi
_EMOTION_BASE = np.array([0.0, 0.0, -0.2, 0.2, -0.3, -0.4])  # offsets: negative -> often absent
_EMOTION_AROUSAL = np.array([1.0, 0.5, 1.0, 1.0, 0.6, 0.8])  # loadings of the shared factor


# ---------------------------------------------------------------------------------------------
# The world: fixed random directions and domain parameters (config seed only).
_WORLD_KEY = 7919
_ROT_K = 4


def synth_world(config: SynthConfig | str = "mosi") -> dict[str, Any]:
    """The fixed parts of a SynthMSA world (drawn from ``config.seed`` only).

    Returns ``directions`` {modality: (d,) unit vector}, ``basis`` {modality: (d, k) orthonormal,
    column 0 = the direction}, and per domain (arrays indexed by domain): ``rotation``
    {modality: (D, k, k)}, ``scale`` / ``offset`` {modality: (D, d)}, ``noise_mult`` (D,),
    ``reliability`` (D, 3) and ``mix`` (D, 5). Domain 0 is the identity.
    """
    cfg = preset(config) if isinstance(config, str) else config
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _WORLD_KEY]))
    directions, basis = {}, {}
    for m, d in zip(MODALITIES, cfg.dims):
        g = rng.standard_normal((d, min(_ROT_K, d)))
        q, r = np.linalg.qr(g)
        q = q * np.sign(np.diag(r))[None, :]  # unique QR
        basis[m] = q.astype(np.float32)
        directions[m] = q[:, 0].astype(np.float32)
    shift, D = float(cfg.domain_shift), int(cfg.n_domains)
    base_logits = np.log(np.maximum(cfg.mix_vector(), 1e-300))
    base_logits[cfg.mix_vector() == 0] = -np.inf
    noise_mult = np.ones(D)
    reliability = np.ones((D, 3))
    mix = np.tile(cfg.mix_vector(), (D, 1))
    rotation = {m: np.tile(np.eye(basis[m].shape[1]), (D, 1, 1)) for m in MODALITIES}
    scale = {m: np.ones((D, d)) for m, d in zip(MODALITIES, cfg.dims)}
    offset = {m: np.zeros((D, d)) for m, d in zip(MODALITIES, cfg.dims)}
    for dom in range(1, D):
        r = np.random.default_rng(np.random.SeedSequence([cfg.seed, _WORLD_KEY, dom]))
        noise_mult[dom] = math.exp(0.2 * shift * abs(r.standard_normal()))  # >= 1: noisier
        reliability[dom] = np.exp(-0.3 * shift * np.abs(r.standard_normal(3)))  # <= 1: weaker cues
        logits = base_logits + 0.3 * shift * r.standard_normal(len(INTERACTION_TYPES))
        p = np.exp(logits - np.max(logits[np.isfinite(logits)]))
        mix[dom] = p / p.sum()
        for m, d in zip(MODALITIES, cfg.dims):
            k = basis[m].shape[1]
            v = r.standard_normal(max(k - 1, 1))
            if k > 1:  # plane (u, basis @ [0, v]); Cayley transform: angle = 2 arctan(shift / 4)
                b = np.zeros((k, k))
                b[0, 1:] = v / np.linalg.norm(v) * (0.25 * shift)
                b[1:, 0] = -b[0, 1:]
                rotation[m][dom] = np.linalg.solve(np.eye(k) - b, np.eye(k) + b)
            scale[m][dom] = np.exp(0.3 * shift * r.standard_normal(d))
            offset[m][dom] = 0.5 * shift * cfg.noise * r.standard_normal(d)
    return {"directions": directions, "basis": basis, "rotation": rotation, "scale": scale,
            "offset": offset, "noise_mult": noise_mult, "reliability": reliability, "mix": mix}


# ---------------------------------------------------------------------------------------------
# Per-sample generation.
def _draw_latent(rng: np.random.Generator, shape: Any, cfg: SynthConfig) -> np.ndarray:
    """Latent sentiment on the label grid: exact zeros w.p. zero_frac, else sign * hi * Beta(1.5, 1.8)."""
    hi = cfg.hi
    mag = rng.beta(1.5, 1.8, size=shape) * hi
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    s = sign * mag
    s[rng.random(shape) < cfg.zero_frac] = 0.0
    return _to_grid(s, cfg)


def _to_grid(s: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    hi = cfg.hi
    if cfg.label_grid > 0:
        s = np.round(s / cfg.label_grid) * cfg.label_grid
    s = np.clip(s, -hi, hi)
    return s + 0.0  # turns -0.0 into 0.0


def _emotions(rng: np.random.Generator, z: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    n = len(z)
    g0 = rng.standard_normal(n)
    gk = rng.standard_normal((n, len(EMOTIONS)))
    raw = (_EMOTION_BASE[None] + EMOTION_LOADINGS[None] * z[:, None]
           + cfg.emotion_shared * _EMOTION_AROUSAL[None] * g0[:, None] + cfg.emotion_specific * gk)
    return np.clip(np.round(raw * 3.0) / 3.0, 0.0, 3.0).astype(np.float32)


def _clues(rng: np.random.Generator, msg: np.ndarray, tfrac: np.ndarray, modality: str,
           noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Template sentences for one modality's cue; returns (clues, swapped mask)."""
    n = len(msg)
    a = np.abs(msg)
    b = np.where(a < 0.1, 2, np.where(a < 0.5, 1, 0))  # strong 0, mild 1, neutral 2 on the - side
    b = np.where((msg > 0) & (b != 2), 4 - b, b)  # mirror to the + side
    variant = rng.integers(0, len(AUDIO_TEMPLATES[0]), n)
    swapped = np.zeros(n, dtype=bool)
    k = int(round(noise * n))
    if k:
        swapped[rng.permutation(n)[:k]] = True
    neutral_flip = np.where(rng.random(n) < 0.5, 1, 3)
    wrong = np.where(b == 2, neutral_flip, 4 - b)
    b = np.where(swapped, wrong, b)
    t = np.clip((tfrac * 3).astype(np.int64), 0, 2)
    return _SENTENCES[modality][b, variant, t], swapped


def _n_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _sequences(ss: np.random.SeedSequence, n: int, L: int, d: int, lengths: np.ndarray, noise_n: np.ndarray,
               ar: float, amp: np.ndarray, tau: np.ndarray, width: float, world: dict, m: str,
               dom: np.ndarray, distort: bool) -> np.ndarray:
    """(n, L, d) float32: AR(1) background + Gaussian-bump cue along u_m, distorted, zero-padded.

    Vectorised over samples. The Python loops run over blocks of samples and the L time steps.
    Each block's (block, d) time slice stays in the CPU cache, so the whole array crosses memory
    about twice: once for the random fill, once for the update. Every block has its own child
    random stream, so blocks run in parallel threads (numpy releases the GIL). The output does
    not depend on the number of threads.
    """
    f32 = np.float32
    u = world["directions"][m][None, :]
    x = np.empty((n, L, d), dtype=f32)
    t = np.arange(L, dtype=f32)
    w = (amp[:, None] * np.exp(-0.5 * ((t[None, :] - tau[:, None]) / width) ** 2)).astype(f32)  # (n, L)
    a = f32(ar)
    # x_0 = k0 e_0 + w_0 u ; x_t = a x_{t-1} + k1 e_t + (w_t - a w_{t-1}) u, so the AR recursion
    # acts on the background only and the cue appears exactly once, as w_t u.
    k0 = (math.sqrt(12.0) * noise_n).astype(f32)[:, None]  # unit-variance uniform innovations * noise
    k1 = (math.sqrt(12.0) * math.sqrt(1.0 - ar * ar) * noise_n).astype(f32)[:, None]
    # The cue and the centring of the U[0, 1) innovations (-k/2 per sample) are both rank-1 in d:
    # one small matmul [coef_cue, coef_centre] @ [u; 1] adds them together.
    u1 = np.concatenate([u, np.ones((1, d), dtype=f32)], axis=0)  # (2, d)
    coef = np.empty((n, L, 2), dtype=f32)
    coef[:, 0, 0] = w[:, 0]
    coef[:, 1:, 0] = w[:, 1:] - a * w[:, :-1]
    coef[:, 0, 1] = -0.5 * k0[:, 0]
    coef[:, 1:, 1] = -0.5 * k1
    pad = np.arange(L)[None, :] >= lengths[:, None]
    block = int(min(n, max(16, 98304 // d)))  # ~384 KB per time slice: fits in L2
    starts = list(range(0, n, block))
    seeds = ss.spawn(len(starts))
    if distort:
        q = world["basis"][m]
        k = q.shape[1]
        rot = (world["rotation"][m] - np.eye(k)[None]).astype(f32)  # zero for domain 0
        qt = np.ascontiguousarray(q.T)
        sc_all, of_all = world["scale"][m].astype(f32), world["offset"][m].astype(f32)

    def run(j: int) -> None:
        b0 = starts[j]
        b1 = min(n, b0 + block)
        xb = x[b0:b1]
        np.random.default_rng(seeds[j]).random(out=xb, dtype=f32)  # U[0, 1) innovations
        tb = np.empty((b1 - b0, d), dtype=f32)
        cb, k0b, k1b = coef[b0:b1], k0[b0:b1], k1[b0:b1]
        for i in range(L):
            xi = xb[:, i]
            if i == 0:
                xi *= k0b
            else:
                xi *= k1b
                np.multiply(xb[:, i - 1], a, out=tb)
                xi += tb
            np.matmul(cb[:, i], u1, out=tb)
            xi += tb
        if distort:  # rotation of the cue subspace, per-dimension scale and offset, per domain
            db = dom[b0:b1]
            rb, sc, of = rot[db], sc_all[db], of_all[db]
            for i in range(L):
                xi = xb[:, i]
                delta = np.einsum("nk,nkj->nj", xi @ q, rb)
                np.matmul(delta, qt, out=tb)
                xi += tb
                xi *= sc
                xi += of
        xb[pad[b0:b1]] = 0.0

    workers = min(_n_threads(), len(starts))
    if workers > 1 and x.size >= 2_000_000:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            list(ex.map(run, range(len(starts))))
    else:
        for j in range(len(starts)):
            run(j)
    return x


def _cue_frames(rng: np.random.Generator, lengths: dict[str, np.ndarray], cfg: SynthConfig) -> dict[str, np.ndarray]:
    """Cue centres in frames, inside the valid frames; vision = audio (relative position) + av_lag."""
    margin = float(cfg.cue_width)
    out = {}
    for m in ("text", "audio"):
        ln = lengths[m].astype(np.float64)
        lo = np.minimum(margin, (ln - 1) / 2)
        hi = np.maximum(ln - 1 - lo - (cfg.av_lag * ln / lengths["vision"] if m == "audio" else 0.0), lo)
        out[m] = lo + rng.random(len(ln)) * (hi - lo)
    lv = lengths["vision"].astype(np.float64)
    lo = np.minimum(margin, (lv - 1) / 2)
    tv = out["audio"] / lengths["audio"] * lv + cfg.av_lag
    out["vision"] = np.clip(tv, lo, np.maximum(lv - 1 - lo, lo))
    return out


def _generate(cfg: SynthConfig, world: dict, ss: np.random.SeedSequence, n: int,
              labels: np.ndarray | None = None, with_text: bool = True) -> dict[str, Any]:
    """One split's arrays and ground truth. ``labels`` given -> they are the latent sentiment."""
    s_meta, s_text, s_audio, s_vision, s_clue = ss.spawn(5)
    r_meta, r_clue = np.random.default_rng(s_meta), np.random.default_rng(s_clue)
    hi = cfg.hi
    D = int(cfg.n_domains)
    dom = r_meta.integers(0, D, n).astype(np.int64) if D > 1 else np.zeros(n, dtype=np.int64)
    if labels is None:
        s = _draw_latent(r_meta, n, cfg)
        y = s if cfg.label_noise == 0 else _to_grid(s + cfg.label_noise * hi * r_meta.standard_normal(n), cfg)
    else:
        s = np.asarray(labels, dtype=np.float64)
        y = s
    cum = np.cumsum(world["mix"], axis=1)[dom]  # (n, 5)
    itype = (r_meta.random(n)[:, None] >= cum[:, :-1]).sum(axis=1).astype(np.int64)
    z = s / hi
    nuis = _draw_latent(r_meta, (n, 3), cfg) / hi
    msg = nuis.copy()
    it = {k: itype == i for i, k in enumerate(INTERACTION_TYPES)}
    msg[it["uniq_text"] | it["redundancy"], 0] = z[it["uniq_text"] | it["redundancy"]]
    msg[it["uniq_audio"] | it["redundancy"], 1] = z[it["uniq_audio"] | it["redundancy"]]
    msg[it["uniq_vision"] | it["redundancy"], 2] = z[it["uniq_vision"] | it["redundancy"]]
    e = np.where(r_meta.random(n) < 0.5, -1.0, 1.0)
    syn = it["synergy"]
    root = np.sqrt(np.abs(z))
    msg[syn, 1] = (e * root)[syn]
    msg[syn, 2] = (e * np.sign(z) * root)[syn]
    frac = cfg.min_len_frac + r_meta.random(n) * (1.0 - cfg.min_len_frac)
    need = int(math.ceil(2 * cfg.cue_width)) + 1
    lengths = {m: np.clip(np.ceil(frac * L), min(need, L), L).astype(np.int64)
               for m, L in zip(MODALITIES, cfg.seq_len)}
    tau = _cue_frames(r_meta, lengths, cfg)
    cue_time = np.stack([tau[m] / lengths[m] for m in MODALITIES], axis=1).astype(np.float32)
    emotions = _emotions(r_meta, s / hi, cfg)
    audio_clue, sw_a = _clues(r_clue, msg[:, 1], cue_time[:, 1], "audio", cfg.clue_noise)
    vision_clue, sw_v = _clues(r_clue, msg[:, 2], cue_time[:, 2], "vision", cfg.clue_noise)
    distort = D > 1 and cfg.domain_shift > 0
    noise_n = cfg.noise * world["noise_mult"][dom]
    out: dict[str, Any] = {}
    for j, (m, sm) in enumerate(zip(MODALITIES, (s_text, s_audio, s_vision))):
        if m == "text" and not with_text:
            continue
        amp = cfg.cue_strength[m] * world["reliability"][dom, j] * msg[:, j]
        out[m] = _sequences(sm, n, cfg.seq_len[j], cfg.dims[j], lengths[m], noise_n, cfg.ar_coef,
                            amp, tau[m], cfg.cue_width, world, m, dom, distort)
        out[f"{m}_lengths"] = lengths[m]
    out.update(labels=y.astype(np.float32), latent=s.astype(np.float32), interaction=itype, domain=dom,
               messages=msg.astype(np.float32), cue_time=cue_time, cue_frame=np.stack([tau[m] for m in MODALITIES], 1),
               emotions=emotions, audio_clue=audio_clue, vision_clue=vision_clue,
               clue_swapped=np.stack([sw_a, sw_v], axis=1))
    return out


def _split_stream(cfg: SynthConfig, seed: int, split: str) -> np.random.SeedSequence:
    key = {"train": 0, "valid": 1, "test": 2}.get(split)
    if key is None:
        key = 1000 + sum(ord(c) * 31 ** i for i, c in enumerate(split)) % 1_000_003
    return np.random.SeedSequence([int(seed), int(cfg.seed), key])


def _resolve(config: SynthConfig | str, overrides: dict[str, Any]) -> SynthConfig:
    if isinstance(config, str):
        return preset(config, **overrides)
    if not isinstance(config, SynthConfig):
        raise TypeError(f"config must be a SynthConfig or a preset name; found {type(config).__name__}")
    if "scale" in overrides:
        raise ValueError("scale applies to preset names; pass n_train/n_valid/n_test with a SynthConfig")
    if "seq_len" in overrides and np.ndim(overrides["seq_len"]) == 0:
        overrides = {**overrides, "seq_len": (int(overrides["seq_len"]),) * 3}
    return replace(config, **overrides) if overrides else config


_TRUTH_KEYS = ("latent", "messages", "cue_frame", "clue_swapped")


def make_synth_with_truth(config: SynthConfig | str = "mosi", seed: int = 0,
                          **overrides: Any) -> tuple[MSADataset, dict[str, dict[str, np.ndarray]]]:
    """Like :func:`make_synth`, plus the hidden ground truth per split.

    The truth dict maps a split name to ``latent`` (N,) s before label noise, ``messages``
    (N, 3) the per-modality message c, ``cue_frame`` (N, 3) the cue centres in frames, and
    ``clue_swapped`` (N, 2) which audio/vision clues were replaced by a wrong description.
    """
    cfg = _resolve(config, overrides)
    world = synth_world(cfg)
    name = f"synth-{cfg.name}"
    splits, truth = {}, {}
    swapped = {"audio": 0, "vision": 0}
    for split, n in cfg.sizes.items():
        g = _generate(cfg, world, _split_stream(cfg, seed, split), n)
        ids = np.array([f"{name}/{split}/{i:05d}" for i in range(n)])
        splits[split] = Split(
            text=g["text"], audio=g["audio"], vision=g["vision"], labels=g["labels"], ids=ids,
            text_lengths=g["text_lengths"], audio_lengths=g["audio_lengths"], vision_lengths=g["vision_lengths"],
            emotions=g["emotions"], interaction=g["interaction"], domain=g["domain"],
            audio_clue=g["audio_clue"], vision_clue=g["vision_clue"], cue_time=g["cue_time"])
        truth[split] = {k: g[k] for k in _TRUTH_KEYS}
        swapped["audio"] += int(g["clue_swapped"][:, 0].sum())
        swapped["vision"] += int(g["clue_swapped"][:, 1].sum())
    prov = {"kind": "synthetic", "source": "SynthMSA", "config": asdict(cfg), "seed": int(seed),
            "clue_noise_swapped": swapped["audio"] + swapped["vision"],
            "clue_noise_swapped_by_modality": swapped}
    ds = MSADataset(name=name, label_range=cfg.label_range, metric_family=cfg.metric_family,
                    provenance=prov, **splits)
    return ds, truth


def make_synth(config: SynthConfig | str = "mosi", seed: int = 0, **overrides: Any) -> MSADataset:
    """Generate a SynthMSA dataset named ``synth-<preset>``.

    ``config`` is a `SynthConfig` or a preset name (then ``overrides`` may include ``scale``).
    ``seed`` draws the samples; ``config.seed`` fixes the world (cue directions, domains).
    The same (config, seed) gives bit-identical arrays.
    """
    return make_synth_with_truth(config, seed, **overrides)[0]


def synth_modalities_for_labels(labels: np.ndarray, preset: SynthConfig | str = "mosi", seed: int = 0,
                                split: str = "train", **overrides: Any) -> dict[str, Any]:
    """SynthMSA audio and vision (plus ground truth) for *given* real labels, for 'mosi-semi'.

    The given labels are the latent sentiment s. The text is real and not generated here, so a
    ``uniq_text`` sample means "audio and vision carry nuisance only; the label must come from
    the real text". Synergy uses the audio-vision pair, never text, so the default mix is valid.
    Text columns of ``cue_time`` and ``messages`` are NaN (unknown for real text). Pass a
    different ``split`` for each split you build, so that their random streams are independent.

    Returns a dict: ``audio`` (N, La, da), ``vision`` (N, Lv, dv) float32, ``audio_lengths``,
    ``vision_lengths``, ``interaction``, ``domain`` (N,) int64, ``cue_time`` (N, 3),
    ``audio_clue``, ``vision_clue`` (N,) str, ``emotions`` (N, 6), ``messages`` (N, 3),
    ``clue_swapped`` (N, 2), ``provenance`` (a json-serialisable dict).
    """
    cfg = _resolve(preset, overrides)
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise DataError(f"synth_modalities_for_labels: labels must be a non-empty 1-D array; found shape {y.shape}")
    if np.isnan(y).any():
        raise DataError(f"synth_modalities_for_labels: labels contain {int(np.isnan(y).sum())} NaN value(s)")
    lo, hi = cfg.label_range
    if (y < lo - 1e-6).any() or (y > hi + 1e-6).any():
        raise DataError(f"synth_modalities_for_labels: labels outside the label range [{lo}, {hi}] "
                        f"(min {y.min():.3f}, max {y.max():.3f})")
    y = np.clip(y, lo, hi)
    g = _generate(cfg, synth_world(cfg), _split_stream(cfg, seed, f"semi:{split}"), len(y), labels=y,
                  with_text=False)
    g["cue_time"][:, 0] = np.nan
    g["messages"][:, 0] = np.nan
    keys = ("audio", "vision", "audio_lengths", "vision_lengths", "interaction", "domain", "cue_time",
            "audio_clue", "vision_clue", "emotions", "messages", "clue_swapped")
    out = {k: g[k] for k in keys}
    out["provenance"] = {"kind": "semi-synthetic", "source": "SynthMSA audio/vision from real labels",
                         "config": asdict(cfg), "seed": int(seed), "split": split,
                         "clue_noise_swapped": int(g["clue_swapped"].sum())}
    return out


def domain_split(ds: MSADataset, train_domains: list[int], test_domains: list[int]) -> MSADataset:
    """Keep only ``train_domains`` in train/valid and only ``test_domains`` in test (DG protocol)."""
    train_domains, test_domains = [int(d) for d in train_domains], [int(d) for d in test_domains]
    new = {}
    for split in SPLITS:
        sp = getattr(ds, split)
        if sp is None:
            continue
        if sp.domain is None:
            raise DataError(f"{ds.name} [{split}]: no 'domain' field; domain_split needs per-sample domains")
        keep = train_domains if split != "test" else test_domains
        idx = np.flatnonzero(np.isin(sp.domain, keep))
        if len(idx) == 0:
            present = sorted(int(v) for v in np.unique(sp.domain))
            raise DataError(f"{ds.name} [{split}]: no samples from domain(s) {keep}; domains present: {present}")
        new[split] = sp.subset(idx)
    prov = dict(ds.provenance)
    prov["domain_split"] = {"train_domains": train_domains, "test_domains": test_domains}
    return replace(ds, name=f"{ds.name}[domains {train_domains}->{test_domains}]", provenance=prov, **new)
