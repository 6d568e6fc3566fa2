"""`msa-book`: run the chapters with papermill, list models, featurise text, score a raw clip.

    msa-book run --profile default                 # every notebook -> book/generated/
    msa-book run --profile smoke --only 00         # one chapter
    msa-book run -p seeds "[1111,1112]"            # override a parameter for every chapter
    msa-book build                                  # render the book (jupyter-book build -W -n --keep-going .)
    msa-book models                                 # the model registry
    msa-book featurize --data-root ../shared/data   # pre-compute the cached MiniLM features
    msa-book predict --video CLIP.mp4 --transcript "..." --checkpoint DIR   # score one raw clip

Configuration is papermill YAML (``configs/<notebook>/<profile>.yaml``); this is only a driver.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def reads_other_chapters(nb: Path) -> bool:
    """True for a chapter that gathers the others' results.json (notebook metadata
    ``msa_book.reads_other_chapters``, e.g. the comparison's claims dashboard): it runs after them."""
    return bool(json.loads(nb.read_text()).get("metadata", {}).get("msa_book", {}).get("reads_other_chapters"))


def notebook_paths(only: list[str] | None = None, root: Path = ROOT) -> list[Path]:
    """The chapters in run order: by number, except that chapters reading the others' results go last."""
    nbs = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"), key=lambda p: (reads_other_chapters(p), p.name))
    if only:
        nbs = [p for p in nbs if any(p.stem.startswith(o) or p.stem == o for o in only)]
        if not nbs:
            raise SystemExit(f"no notebook matches {only}; available: {[p.stem for p in notebook_paths(root=root)]}")
    return nbs


def load_profile(nb: Path, profile: str, root: Path = ROOT) -> dict:
    path = root / "configs" / nb.stem / f"{profile}.yaml"
    if not path.exists():
        raise SystemExit(f"missing parameter file {path}; each notebook needs configs/<notebook>/{{smoke,default,full}}.yaml")
    return yaml.safe_load(path.read_text()) or {}


def check_parameters(nb: Path, params: dict) -> None:
    """Papermill only *warns* about unknown parameters; we refuse them."""
    import papermill as pm
    declared = set(pm.inspect_notebook(str(nb)))
    unknown = set(params) - declared
    if unknown:
        raise SystemExit(f"{nb.name}: parameters {sorted(unknown)} are not declared in its parameters cell "
                         f"(declared: {sorted(declared)})")


def run_notebook(nb: Path, out_dir: Path, profile: str, overrides: dict | None = None,
                 data_root: str | None = None, root: Path = ROOT) -> float:
    """Execute one notebook into ``out_dir/<stem>.ipynb``; return wall seconds."""
    import papermill as pm
    params = {**load_profile(nb, profile, root), **(overrides or {})}
    params.setdefault("profile", profile)
    params["out_dir"] = str(out_dir.resolve())
    if data_root is not None:
        params.setdefault("data_root", str(Path(data_root).resolve()))
    check_parameters(nb, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, kernel_name="python3",
                        cwd=str(root), progress_bar=False, log_output=False)
    return time.perf_counter() - t0


def _parse_overrides(pairs: list[list[str]] | None) -> dict:
    out = {}
    for k, v in pairs or []:
        out[k] = yaml.safe_load(v)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    timings = {}
    tfile = out / "timings.json"
    if tfile.exists():
        timings = json.loads(tfile.read_text())
    for nb in notebook_paths(args.only):
        print(f"[msa-book] {nb.stem}: profile={args.profile}", flush=True)
        secs = run_notebook(nb, out, args.profile, _parse_overrides(args.parameter), args.data_root)
        timings[nb.stem] = {"profile": args.profile, "seconds": round(secs, 1), "cpu_count": os.cpu_count()}
        print(f"[msa-book] {nb.stem}: done in {secs:.1f} s", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        tfile.write_text(json.dumps(timings, indent=1))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    import subprocess
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", "-W", "-n", "--keep-going", str(args.root)]
    print("[msa-book]", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def cmd_models(_: argparse.Namespace) -> int:
    from msa_lib.models import available
    print("\n".join(available()))
    return 0


def cmd_featurize(args: argparse.Namespace) -> int:
    from msa_lib.data import get_dataset
    ds = get_dataset("mosi-text", data_root=args.data_root, cache_dir=args.cache_dir, progress=True)
    print(ds.describe())
    return 0


def _format_prediction(res: dict) -> str:
    lines = []
    if res.get("score") is not None:
        lines.append(f"score: {res['score']:+.4f} ({res['polarity']})")
    else:
        lines.append(f"class: {res['class_index']} (logits {', '.join(f'{v:.3f}' for v in res['logits'])})")
    lines.append(f"model: {res['model']} on {', '.join(res['modalities'])} from {res['checkpoint']}")
    prov = res["provenance"]
    clip = prov.get("clip")
    if clip:
        parts = []
        if clip.get("audio"):
            a = clip["audio"]
            parts.append(f"audio {a['codec']} {a['sample_rate']} Hz x{a['channels']}")
        if clip.get("video"):
            v = clip["video"]
            parts.append(f"video {v['codec']} {v['width']}x{v['height']} @ {v['fps']:.2f} fps")
        lines.append(f"clip: {res['video']} ({clip['duration_s']:.2f} s; {', '.join(parts)})")
    for m in ("text", "audio", "vision"):
        if m not in prov:
            continue
        p = prov[m]
        if m == "text":
            desc = f"{p['encoder']} (md5 {p['encoder_md5'][:8]}), {p['level']}, {p['n_tokens']} tokens, max_len {p['max_len']}"
        elif m == "audio":
            desc = (f"{p['extractor']} {p['dim']}-d @ {p['sample_rate']} Hz (resampler {p['res_type']}), "
                    f"{p['n_frames']} frames; {p['decoder']}, librosa {p['librosa']}")
        else:
            desc = (f"{p['extractor']} {p['dim']}-d @ {p['fps']} fps, {p['n_frames']} frames, face in "
                    f"{100 * p['face_detected_fraction']:.0f}%; {p['opencv']}")
        lines.append(f"{m}: {desc}")
    t = res["timings"]
    lines.append(f"time: {res['seconds']:.2f} s (" + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()) + ")")
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from msa_lib.features.media import MediaDecodeError
    from msa_lib.predict import predict_clip

    hf_logging.disable_progress_bar()  # keep the printed result clean ("Loading weights" bars)
    try:
        res = predict_clip(args.video, args.transcript, args.checkpoint, device=args.device)
    except (FileNotFoundError, ValueError, KeyError, MediaDecodeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"msa-book predict: error: {msg}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    else:
        print(_format_prediction(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="msa-book", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks with papermill")
    r.add_argument("--profile", default="default", choices=["smoke", "default", "full"])
    r.add_argument("--out", default="book/generated")
    r.add_argument("--only", nargs="*", help="notebook stems or prefixes, e.g. 00 01_i2moe")
    r.add_argument("--data-root", default=None, help="folder with the real data (default ../shared/data)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "YAML_VALUE"))
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("build", help="render the book from the executed notebooks")
    b.add_argument("--root", default=str(ROOT))
    b.set_defaults(func=cmd_build)
    m = sub.add_parser("models", help="list registered models")
    m.set_defaults(func=cmd_models)
    f = sub.add_parser("featurize", help="cache MiniLM features of the real MOSI transcripts")
    f.add_argument("--data-root", default=None)
    f.add_argument("--cache-dir", default=".cache/msa_lib")
    f.set_defaults(func=cmd_featurize)
    pr = sub.add_parser("predict", help="score one raw clip (video + transcript) with a saved checkpoint")
    pr.add_argument("--video", required=True, help="the clip (mp4 / any format FFmpeg reads)")
    pr.add_argument("--transcript", default=None, help="what is said in the clip (needed when the model uses text)")
    pr.add_argument("--checkpoint", required=True, help="a folder written by msa_lib.checkpoint.save_checkpoint")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--json", action="store_true", help="print the full result as JSON")
    pr.set_defaults(func=cmd_predict)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
