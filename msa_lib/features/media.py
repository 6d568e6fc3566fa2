"""Decode audio and video frames from media files with PyAV (``av``), whose wheels bundle FFmpeg.

Why PyAV: the raw-clip pipeline must read mp4 / m4a / mp3 / wav without an ``ffmpeg`` executable or
any system package; ``pip install av`` is enough. Everything here is deterministic (FFmpeg's decoders
and libswresample are bit-exact for a given build).

* `probe`: container duration, audio sample rate / channels, video fps / size / frame count.
* `decode_audio`: the whole audio track as float32 at its native rate or resampled with FFmpeg's
  libswresample (`av.AudioResampler`); ``mono`` averages the channels (as ``librosa.to_mono`` does).
  `msa_lib.features.audio.load_audio` decodes at the native rate here and resamples with librosa's
  filters instead, so that an mp4 gives the same waveform as ``librosa.load`` on its wav.
* `decode_frames`: RGB (or grey) uint8 frames, either every decoded frame or resampled to a fixed
  ``fps`` on a regular grid the way ``ffmpeg -r`` does (frames repeated or dropped, never blended).

Errors: a missing path raises `FileNotFoundError` naming it; a file FFmpeg cannot open or decode
(corrupt, truncated header, not media at all) and a file without the requested stream raise
`MediaDecodeError`, whose message names the file and the reason.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MediaDecodeError", "probe", "decode_audio", "decode_frames", "pyav_version"]


class MediaDecodeError(RuntimeError):
    """A media file cannot be opened or decoded, or lacks the requested (audio / video) stream."""


def pyav_version() -> str:
    """PyAV's version plus the FFmpeg libavcodec version it bundles, for feature provenance."""
    import av

    try:
        codec = ".".join(str(v) for v in av.library_versions["libavcodec"])
    except Exception:  # pragma: no cover - attribute layout differs across PyAV versions
        codec = "?"
    return f"av {av.__version__} (libavcodec {codec})"


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"media file not found: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"media path is not a file: {path}")
    return path


def _open(path: Path):
    import av

    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise MediaDecodeError(
            f"{path}: FFmpeg (via PyAV) cannot open this file as audio/video; it is corrupt, truncated or not a "
            f"supported media format ({type(e).__name__}: {e})") from e


def _streams_desc(container) -> str:
    parts = [f"{s.type} {s.codec_context.name}" for s in container.streams] or ["no streams"]
    return ", ".join(parts)


def _stream(container, kind: str, path: Path, index: int):
    streams = container.streams.audio if kind == "audio" else container.streams.video
    if len(streams) == 0:
        raise MediaDecodeError(f"{path}: has no {kind} stream (found: {_streams_desc(container)})")
    if not 0 <= index < len(streams):
        raise MediaDecodeError(f"{path}: {kind} stream index {index} out of range; the file has {len(streams)} "
                               f"{kind} stream(s)")
    return streams[index]


def _seconds(value: Any, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def probe(path: str | Path) -> dict[str, Any]:
    """Describe a media file without decoding it.

    Returns ``{"path", "format", "duration_s", "audio": {...} | None, "video": {...} | None}`` where
    audio has ``codec, sample_rate, channels, layout, duration_s, start_s`` and video has ``codec, fps,
    width, height, n_frames, n_frames_exact, duration_s, start_s``. ``n_frames`` is the container's count
    when it stores one (mp4 does), else ``round(duration * fps)`` with ``n_frames_exact`` False.
    Only the first audio / video stream is described.
    """
    path = _check_path(path)
    container = _open(path)
    try:
        dur = None if container.duration is None else container.duration / 1_000_000  # av.time_base is 1e6
        out: dict[str, Any] = {"path": str(path), "format": container.format.name, "duration_s": dur,
                               "audio": None, "video": None}
        if container.streams.audio:
            s = container.streams.audio[0]
            cc = s.codec_context
            out["audio"] = {"codec": cc.name, "sample_rate": int(cc.sample_rate), "channels": int(cc.channels),
                            "layout": cc.layout.name, "duration_s": _seconds(s.duration, s.time_base),
                            "start_s": _seconds(s.start_time, s.time_base)}
        if container.streams.video:
            s = container.streams.video[0]
            cc = s.codec_context
            rate = s.average_rate or s.guessed_rate
            fps = float(rate) if rate else None
            vdur = _seconds(s.duration, s.time_base) or dur
            exact = bool(s.frames)
            n = int(s.frames) if exact else (int(round(vdur * fps)) if vdur and fps else None)
            out["video"] = {"codec": cc.name, "fps": fps, "width": int(cc.width), "height": int(cc.height),
                            "n_frames": n, "n_frames_exact": exact, "duration_s": vdur,
                            "start_s": _seconds(s.start_time, s.time_base)}
        if out["audio"] is None and out["video"] is None:
            raise MediaDecodeError(f"{path}: contains neither audio nor video ({_streams_desc(container)})")
        return out
    finally:
        container.close()


def decode_audio(path: str | Path, sr: int | None = None, mono: bool = True,
                 stream: int = 0) -> tuple[np.ndarray, int]:
    """Decode an audio track → (waveform float32, sample rate).

    ``sr=None`` keeps the native rate; otherwise FFmpeg's libswresample (`av.AudioResampler`, its
    default filter) converts the rate. The waveform is (n,) when ``mono`` (the mean of the channels,
    computed after resampling, which is linear) and (channels, n) otherwise. Samples are returned from
    the first decoded one: a track's start offset (``probe()["audio"]["start_s"]``) is not padded in,
    as ``ffmpeg -i clip.mp4 clip.wav`` does not either. Encoder priming samples are dropped by FFmpeg.
    """
    import av

    path = _check_path(path)
    if sr is not None and (int(sr) != sr or sr <= 0):
        raise ValueError(f"sr must be a positive integer or None; got {sr!r}")
    container = _open(path)
    try:
        st = _stream(container, "audio", path, stream)
        native = int(st.codec_context.sample_rate)
        if native <= 0:
            raise MediaDecodeError(f"{path}: audio stream {stream} reports no sample rate")
        target = int(sr) if sr is not None else native
        # planar float keeps the channels apart: to_ndarray() gives (channels, samples)
        resampler = av.AudioResampler(format="fltp", layout=None, rate=target)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(st):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray())
        except av.FFmpegError as e:
            raise MediaDecodeError(f"{path}: audio stream {stream} ({st.codec_context.name}) could not be decoded "
                                   f"after {sum(c.shape[1] for c in chunks)} samples; the file is corrupt or "
                                   f"truncated ({type(e).__name__}: {e})") from e
    finally:
        container.close()
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise MediaDecodeError(f"{path}: audio stream {stream} decoded to 0 samples (empty or corrupt track)")
    y = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    if mono:
        y = y.mean(axis=0, dtype=np.float64).astype(np.float32) if y.shape[0] > 1 else y[0]
    return np.ascontiguousarray(y), target


def _frame_array(frame, gray: bool, size: tuple[int, int] | None) -> np.ndarray:
    fmt = "gray" if gray else "rgb24"
    if size is not None:
        frame = frame.reformat(width=size[0], height=size[1], format=fmt)
        return frame.to_ndarray()
    return frame.to_ndarray(format=fmt)


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    if max_side is None or max(width, height) <= max_side:
        return None
    s = max_side / max(width, height)
    # even sizes keep every pixel format's chroma subsampling happy
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def decode_frames(path: str | Path, fps: float | None = None, max_frames: int | None = None, gray: bool = False,
                  *, max_side: int | None = None, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decode video frames → (frames uint8 (T, H, W, 3) RGB, or (T, H, W) with ``gray``; timestamps (T,) s).

    ``fps=None`` returns every decoded frame with its presentation time (seconds from the first
    frame). With ``fps``, output frame k is the last decoded frame whose time, rounded to the output
    grid, is ≤ k, like ``ffmpeg -r fps`` (MMSA-FET extracts OpenFace frames this way at 25 fps):
    frames are repeated or dropped, never interpolated; there are ``round(duration * fps)`` of them and
    the timestamps are ``k / fps``. ``max_frames`` stops after that many output frames; ``max_side``
    downscales (keeping the aspect ratio) so that the longer side is at most that many pixels.
    """
    import av

    path = _check_path(path)
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive or None; got {fps!r}")
    if max_frames is not None and max_frames <= 0:
        raise ValueError(f"max_frames must be positive or None; got {max_frames!r}")
    container = _open(path)
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        st = _stream(container, "video", path, stream)
        cc = st.codec_context
        size = _scaled_size(int(cc.width), int(cc.height), max_side)
        rate = st.average_rate or st.guessed_rate
        native_fps = float(rate) if rate else None
        t0: float | None = None
        current: np.ndarray | None = None  # the frame shown now (fps mode)
        last_t = 0.0
        n_in = 0
        try:
            for frame in container.decode(st):
                t = frame.time if frame.time is not None else (n_in / native_fps if native_fps else float(n_in))
                n_in += 1
                if t0 is None:
                    t0 = t
                t -= t0
                if fps is None:
                    frames.append(_frame_array(frame, gray, size))
                    times.append(t)
                    if max_frames is not None and len(frames) >= max_frames:
                        break
                    continue
                k_new = int(np.floor(t * fps + 0.5 + 1e-9))  # round half up, as FFmpeg's AV_ROUND_NEAR_INF
                while current is not None and len(frames) < k_new:  # emit the current frame up to the new one
                    frames.append(current)
                    times.append(len(times) / fps)
                    if max_frames is not None and len(frames) >= max_frames:
                        break
                if max_frames is not None and len(frames) >= max_frames:
                    break
                # a newer frame for the same output slot replaces the buffered one (which is dropped)
                current = _frame_array(frame, gray, size)
                last_t = t
        except av.FFmpegError as e:
            raise MediaDecodeError(f"{path}: video stream {stream} ({cc.name}) could not be decoded after {n_in} "
                                   f"frames; the file is corrupt or truncated ({type(e).__name__}: {e})") from e
        if fps is not None and current is not None and (max_frames is None or len(frames) < max_frames):
            frame_dur = 1.0 / native_fps if native_fps else 1.0 / fps
            n_out = max(1, int(np.floor((last_t + frame_dur) * fps + 0.5)))  # a last frame past the end is dropped
            if max_frames is not None:
                n_out = min(n_out, max_frames)
            while len(frames) < n_out:
                frames.append(current)
                times.append(len(times) / fps)
    finally:
        container.close()
    if not frames:
        raise MediaDecodeError(f"{path}: video stream {stream} decoded to 0 frames (empty or corrupt track)")
    return np.stack(frames), np.asarray(times, dtype=np.float64)
