"""Model checkpoints: the weights plus everything needed to rebuild the model and feed it the right features.

A checkpoint is a folder with

* ``weights.pt``: the model's ``state_dict`` (plain tensors, so it loads with ``weights_only=True``,
  which never unpickles code);
* ``checkpoint.json``: the registry name, ``dims``, modalities, ``n_out``, the constructor ``hparams``,
  the ``feature_config`` (which extractors, with which settings, made the training features), the
  md5 of ``weights.pt``, and the msa_lib / torch versions and creation time.

Why the feature config travels with the weights: a model trained on 70-d MMSA-FET librosa features
at 22050 Hz silently produces nonsense on 33-d prosody features or on another sample rate. `predict`
compares it with what its extractors produce (`check_feature_config`) and refuses a mismatch.
Both files are written to temporary names and moved into place (weights first, JSON last), so a
folder with a ``checkpoint.json`` always has the matching complete weights.

`train_and_save` is the training path that ends in a checkpoint: it trains a registered model with
`msa_lib.training.fit` (seeded, selected on the validation split), checks that the training features
are the ones the ``feature_config`` describes, and saves weights + JSON with the run's metrics and a
parameter hash; a rerun with the same parameters loads the saved checkpoint instead of training.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import msa_lib
from msa_lib.io import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "WEIGHTS_FILE", "META_FILE", "save_checkpoint", "load_checkpoint",
           "read_checkpoint_meta", "check_feature_config", "train_and_save"]

CHECKPOINT_FORMAT = "msa_lib.checkpoint/1"
WEIGHTS_FILE = "weights.pt"
META_FILE = "checkpoint.json"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _json_checked(obj: Any, what: str) -> Any:
    """Round-trip through JSON so that what is saved is exactly what will be loaded (tuples → lists)."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable (plain str / int / float / bool / list / dict): {e}") from e


def save_checkpoint(model: nn.Module, directory: str | Path, *, model_name: str, dims: Mapping[str, int],
                    hparams: Mapping[str, Any], feature_config: Mapping[str, Any],
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``weights.pt`` and ``checkpoint.json`` into ``directory`` (created if needed); return it.

    ``model_name``, ``dims`` and ``hparams`` must rebuild ``model`` through `msa_lib.models.build`;
    this is checked by comparing the rebuilt model's parameter names and shapes with ``model``'s.
    ``feature_config`` maps each modality to its extractor settings (see `msa_lib.predict.feature_config`);
    where an entry has a ``dim`` it must equal ``dims``. ``extra`` is free JSON (e.g. training metrics).
    """
    from msa_lib.models import available, build

    directory = Path(directory)
    if model_name not in available():
        raise KeyError(f"model {model_name!r} is not in the registry; registered models: {', '.join(available())}")
    reg = getattr(type(model), "registry_name", None)
    if reg is not None and reg != model_name:
        raise ValueError(f"model_name {model_name!r} does not match the model's registry name {reg!r}")
    dims_j = _json_checked({str(k): int(v) for k, v in dims.items()}, "dims")
    hp = _json_checked(dict(hparams), "hparams")
    fc = _json_checked(dict(feature_config), "feature_config")
    ex = _json_checked(dict(extra or {}), "extra")
    for m, cfg in fc.items():
        if isinstance(cfg, Mapping) and "dim" in cfg and m in dims_j and int(cfg["dim"]) != dims_j[m]:
            raise ValueError(f"feature_config[{m!r}]['dim'] = {cfg['dim']} but dims[{m!r}] = {dims_j[m]}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the caller's RNG stream intact
        probe = build(model_name, dims_j, **hp).state_dict()
    want = {k: tuple(v.shape) for k, v in probe.items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
        raise ValueError(f"build({model_name!r}, dims={dims_j}, **hparams) does not rebuild this model: parameters "
                         f"differ at {diff[:8]}; pass the hparams the model was constructed with")
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    atomic_write(weights, lambda fh: torch.save(state, fh))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model_name": model_name,
        "dims": dims_j,
        "modalities": list(getattr(model, "modalities", dims_j.keys())),
        "n_out": int(getattr(model, "n_out", 1)),
        "hparams": hp,
        "feature_config": fc,
        "weights_file": WEIGHTS_FILE,
        "weights_md5": _md5(weights),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "msa_lib_version": msa_lib.__version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "extra": ex,
    }
    text = json.dumps(meta, indent=1, sort_keys=False)
    atomic_write(directory / META_FILE, lambda fh: fh.write(text.encode("utf-8")))
    return directory


def read_checkpoint_meta(directory: str | Path) -> dict[str, Any]:
    """Read and validate ``checkpoint.json`` (no weights loaded)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {directory}")
    path = directory / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a checkpoint folder "
                                f"(save one with msa_lib.checkpoint.save_checkpoint)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object; found {type(meta).__name__}")
    missing = [k for k in ("format", "model_name", "dims", "hparams", "feature_config") if k not in meta]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    if meta["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta['format']!r}; expected {CHECKPOINT_FORMAT!r}")
    return meta


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from ``checkpoint.json`` via the registry and load ``weights.pt`` → (model in eval mode, meta)."""
    from msa_lib.models import available, build

    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    name = meta["model_name"]
    if name not in available():
        raise KeyError(f"{directory / META_FILE}: model {name!r} is not in this msa_lib's registry "
                       f"(version {msa_lib.__version__}; registered: {', '.join(available())})")
    weights = directory / meta.get("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found (the checkpoint's weights)")
    if meta.get("weights_md5") and _md5(weights) != meta["weights_md5"]:
        raise ValueError(f"{weights}: md5 differs from the one recorded in {META_FILE}; the weights were replaced "
                         f"or corrupted after saving")
    model = build(name, meta["dims"], **meta["hparams"])
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as e:
        raise ValueError(f"{weights}: cannot be read as a state_dict with weights_only=True ({type(e).__name__}: {e})") from e
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{weights} does not fit {name}(dims={meta['dims']}, hparams={meta['hparams']}): "
                         f"missing {list(result.missing_keys)[:8]}, unexpected {list(result.unexpected_keys)[:8]}")
    model.to(device)
    model.eval()
    return model, meta


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: list(d) if isinstance(d, tuple) else d}


_MISSING = "<missing>"


def check_feature_config(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> None:
    """Raise ValueError listing every key (dotted path) where ``expected`` and ``actual`` differ, with both values.

    Nested dicts are compared leaf by leaf; a key present on one side only shows ``<missing>`` on the
    other. Numbers compare by value (22050 == 22050.0). Returns None when they agree.
    """
    a, b = _flatten(dict(expected)), _flatten(dict(actual))
    lines = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
        if isinstance(va, bool) or isinstance(vb, bool):  # True == 1 in Python; not here
            same = type(va) is type(vb) and va == vb
        else:
            same = va == vb
        if not same:
            lines.append(f"  {k}: checkpoint has {va!r}, extractor gives {vb!r}")
    if lines:
        raise ValueError("feature config mismatch between the checkpoint and the feature extractor "
                         f"({len(lines)} key(s)):\n" + "\n".join(lines))


def _check_training_features(ds: Any, dims: Mapping[str, int], modalities: list[str],
                             feature_config: Mapping[str, Any]) -> None:
    """Refuse a feature_config that cannot describe the features ``ds`` holds (as far as ``ds`` records them)."""
    missing = [m for m in modalities if m not in feature_config]
    if missing:
        raise ValueError(f"the model uses {modalities} but feature_config has no entry for {missing}: a checkpoint "
                         f"must say how every input it takes was made")
    for m in modalities:
        cfg = feature_config[m]
        if isinstance(cfg, Mapping) and "dim" in cfg and int(cfg["dim"]) != int(dims[m]):
            raise ValueError(f"feature_config[{m!r}]['dim'] = {cfg['dim']} but {ds.name}'s {m} features are "
                             f"{dims[m]}-d")
    enc = (ds.provenance or {}).get("text_encoder")
    text = feature_config.get("text") if "text" in modalities else None
    if isinstance(enc, Mapping) and isinstance(text, Mapping):
        for key_ds, key_fc in (("max_len", "max_len"), ("encoder_identity", "encoder_md5")):
            if key_ds in enc and key_fc in text and enc[key_ds] != text[key_fc]:
                raise ValueError(f"{ds.name}'s text features were made with {key_ds} = {enc[key_ds]!r} but "
                                 f"feature_config['text'][{key_fc!r}] = {text[key_fc]!r}; predict would feed the "
                                 f"model different features than it was trained on")
        if text.get("level", "tokens") == "tokens" and "max_len" in text:
            seq = ds.seq_lens.get("text")
            if seq is not None and int(seq) != int(text["max_len"]):
                raise ValueError(f"{ds.name}'s text sequences are {seq} tokens long but feature_config['text']"
                                 f"['max_len'] = {text['max_len']}")


def _finite_or_none(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: an undefined metric (e.g. Non0 on a split without non-zero labels) becomes None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def train_and_save(ds: Any, model_name: str, directory: str | Path, *, feature_config: Mapping[str, Any],
                   hparams: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None, seed: int = 0,
                   device: str = "cpu", extra: Mapping[str, Any] | None = None, reuse: bool = True,
                   progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model_name`` on ``ds`` with `msa_lib.training.fit` and save it to ``directory`` → (model, meta).

    ``feature_config`` says how the training features were made (`msa_lib.predict.feature_config`); it
    must cover every modality the model uses, match the feature widths and, for text, the encoder and
    ``max_len`` recorded in ``ds.provenance["text_encoder"]``. ``train`` holds `TrainConfig` fields;
    ``hparams`` the model's constructor arguments. The model is seeded exactly as
    `msa_lib.experiments.run_one` seeds it (`set_seed(seed)` then `build`), so the checkpoint is the
    model behind that run's record. ``meta["extra"]`` stores the parameter hash, the dataset, seed,
    protocol, selected epoch and the validation / test metrics. With ``reuse`` a checkpoint in
    ``directory`` with the same parameter hash is loaded instead of training again.
    """
    from msa_lib import training
    from msa_lib.experiments import code_fingerprint, dataset_fingerprint, param_hash
    from msa_lib.models import build

    cfg = training.TrainConfig.from_dict({**dict(train or {}), "device": device, "progress": progress})
    hp = dict(hparams or {})
    if cfg.task == "binary":
        hp.setdefault("n_out", 2)
    dims = dict(ds.dims)
    fc = _json_checked(dict(feature_config), "feature_config")
    with torch.random.fork_rng(devices=[]):
        mods = list(getattr(build(model_name, dims, **hp), "modalities", dims.keys()))
    _check_training_features(ds, dims, mods, fc)
    params = {"model": model_name, "hparams": hp, "train": training.config_dict(cfg), "data": dataset_fingerprint(ds),
              "seed": int(seed), "version": msa_lib.__version__, "code": code_fingerprint(), "feature_config": fc}
    phash = param_hash(params)
    directory = Path(directory)
    if reuse and (directory / META_FILE).is_file():
        try:
            meta = read_checkpoint_meta(directory)
        except ValueError:
            meta = None  # unreadable: train again and overwrite
        if meta is not None and meta.get("extra", {}).get("param_hash") == phash:
            return load_checkpoint(directory, device=device)
    training.set_seed(int(seed))
    model = build(model_name, dims, **hp)
    res = training.fit(model, ds, cfg, seed=int(seed), desc=f"{ds.name}/{model_name}/s{seed} -> checkpoint")
    info = {"param_hash": phash, "dataset": ds.name, "dataset_fingerprint": params["data"],
            "dataset_kind": (ds.provenance or {}).get("kind"), "sizes": ds.sizes, "seed": int(seed),
            "train": params["train"], "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            "train_seconds": round(res.train_seconds, 3), "val_metrics": _finite_or_none(res.val_metrics),
            "test_metrics": _finite_or_none(res.test_metrics), **dict(extra or {})}
    save_checkpoint(res.model, directory, model_name=model_name, dims=dims, hparams=hp, feature_config=fc, extra=info)
    res.model.eval()
    return res.model, read_checkpoint_meta(directory)
