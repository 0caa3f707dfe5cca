"""Baseline for `vssl bench data`: PyAV (threaded) decode + OpenCV resize + float conversion.

Usage: python3 pyav_decode.py CLIP REPEATS [SIZE]

Decodes every frame of CLIP with PyAV (`thread_type = "AUTO"`, FFmpeg frame + slice threads),
converts it to RGB24 (`frame.to_ndarray(format="rgb24")`, swscale), resizes it to SIZE x SIZE
with `cv2.resize(..., interpolation=cv2.INTER_LINEAR)` and converts it to a float32 CHW array
divided by 255: the same work `vssl bench data`'s `video_decode` configuration times.
One warm-up pass, then REPEATS timed passes. Prints one JSON line with the timings, the frame
count and the peak resident memory. Needs `av` and `cv2` importable (pip install av
opencv-python-headless).
"""

import json
import resource
import sys
import time

import av
import cv2
import numpy as np


def decode_all(path: str, size: int) -> int:
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
            x = np.ascontiguousarray(small.transpose(2, 0, 1), dtype=np.float32) / 255.0
            n += 1
            del x
    return n


def main() -> None:
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    frames = decode_all(path, size)  # warm-up
    runs = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        n = decode_all(path, size)
        runs.append(time.perf_counter() - t)
        if n != frames:
            raise SystemExit(f"frame count changed: {n} != {frames}")
    runs_sorted = sorted(runs)
    k = len(runs_sorted)
    median = runs_sorted[k // 2] if k % 2 else 0.5 * (runs_sorted[k // 2 - 1] + runs_sorted[k // 2])
    print(
        json.dumps(
            {
                "frames": frames,
                "seconds_runs": runs,
                "seconds_median": median,
                "seconds_min": min(runs),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "av_version": av.__version__,
                "cv2_version": cv2.__version__,
                "numpy_version": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
