"""A timing worker: one model on one backend in its own process, driven over stdin/stdout (JSON lines).

One process per (backend, model, batch) keeps runtimes from sharing thread pools and gives each
its own memory high-water mark. Commands: `run` (time n iterations), `output` (the logits, for
comparing backends), `stats` (peak RSS), `exit`. Run as `python -m spvit_deploy.bench.worker`.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any, TextIO


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """Resident set size now (VmRSS)."""
    v = _status_mib("VmRSS")
    return v if v is not None else peak_rss_mib()


def peak_rss_mib() -> float:
    """This process's RSS high-water mark: VmHWM on Linux (ru_maxrss would carry the parent's over fork+exec)."""
    v = _status_mib("VmHWM")
    if v is not None:
        return v
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def serve(cfg: dict[str, Any], inp: TextIO, out: TextIO) -> None:
    import numpy as np

    from .backends import BACKENDS

    before = rss_mib()
    t0 = time.perf_counter()
    runner = BACKENDS[cfg["backend"]].make(cfg["path"], cfg.get("threads"))
    load_s = time.perf_counter() - t0
    shape = (cfg["batch"], *cfg["input_shape"])
    x = np.random.default_rng(cfg.get("seed", 0)).standard_normal(shape, dtype=np.float32)
    feed = {cfg.get("input_name", "input"): x}
    reply(out, {"ok": True, "load_s": load_s, "rss_before_mib": before, "rss_loaded_mib": rss_mib()})
    for line in inp:
        cmd = json.loads(line)
        if cmd["cmd"] == "run":
            times = []
            for _ in range(int(cmd["n"])):
                t = time.perf_counter()
                runner.infer(feed)
                times.append(time.perf_counter() - t)
            reply(out, {"ok": True, "times_s": times})
        elif cmd["cmd"] == "output":
            y = next(iter(runner.infer(feed).values())).astype(np.float32)
            reply(out, {"ok": True, "shape": list(y.shape), "data": base64.b64encode(y.tobytes()).decode()})
        elif cmd["cmd"] == "stats":
            reply(out, {"ok": True, "peak_rss_mib": peak_rss_mib(), "rss_mib": rss_mib()})
        elif cmd["cmd"] == "exit":
            runner.close()
            reply(out, {"ok": True})
            return
        else:
            reply(out, {"ok": False, "error": f"unknown command {cmd['cmd']!r}"})


def reply(out: TextIO, msg: dict[str, Any]) -> None:
    out.write(json.dumps(msg) + "\n")
    out.flush()


def main() -> None:
    proto_out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints must not corrupt the protocol
    sys.stdout = sys.stderr
    cfg = json.loads(sys.stdin.readline())
    try:
        serve(cfg, sys.stdin, proto_out)
    except Exception as e:  # reported to the parent as one line; it raises SpvitError
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reply(proto_out, {"ok": False, "error": f"{type(e).__name__}: {first}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
