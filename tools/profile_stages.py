#!/usr/bin/env python3
"""CPU µs per request per stage, from per-thread cProfile (issue 21's table).

    python3 tools/profile_stages.py [--tree NAME=PATH ...] [--duration 4]
                                    [--figures sync,threads16,async16,stat16]

For every tree and figure a ``tools/bench_percost.py`` child runs that one
workload with a cProfile in every thread timed by ``time.thread_time``, so a
function's self time is CPU time, never waiting (py-spy's on-CPU sampling
counts a thread that is runnable but not running, which on a loaded machine
is most of a wake-up).  Each function's self time goes to a stage (a builtin
such as ``sendmsg`` or ``lock.acquire`` by its name, else to its heaviest
caller's stage); the child's unprofiled CPU µs per request, split in those
proportions, gives the table.  Read differences under ~3 µs as noise.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

STAGES = ["task creation", "credit gate", "MID table", "encode", "send", "wake-up",
          "demux read", "decode", "future settle", "return", "fs layer", "caller/bench",
          "other"]

# (file, function or "*") -> stage; the innermost frame with a rule wins.
RULES = {
    ("task.py", "__init__"): "task creation",
    ("task.py", "move"): "MID table", ("task.py", "can_move"): "MID table",
    ("task.py", "header"): "decode",
    ("inflight.py", "*"): "MID table",
    ("credits.py", "*"): "credit gate",
    ("send.py", "sendmsg_all"): "send", ("send.py", "_write"): "send",
    ("send.py", "_build"): "encode", ("send.py", "_credit_request"): "encode",
    ("send.py", "transmit"): "MID table", ("send.py", "_drain"): "MID table",
    ("send.py", "take_queued"): "MID table", ("send.py", "_withdraw"): "MID table",
    ("send.py", "send_now"): "MID table", ("send.py", "_send_now"): "MID table",
    ("send.py", "_as_writer"): "send",
    ("send.py", "_send_single"): "encode", ("send.py", "_count"): "encode",
    ("send.py", "queue"): "credit gate", ("send.py", "_charge"): "credit gate",
    ("demux.py", "_interim"): "decode", ("demux.py", "_unmatched"): "decode",
    ("demux.py", "take_reader_role"): "demux read",
    ("demux.py", "release_reader_role"): "demux read", ("demux.py", "modify"): "demux read",
    ("send.py", "_send_batch"): "encode", ("send.py", "_write_queued"): "send",
    ("send.py", "_flush"): "send", ("send.py", "release"): "send",
    ("send.py", "__enter__"): "send", ("send.py", "__exit__"): "send",
    ("wire.py", "route"): "decode", ("wire.py", "parse_header"): "decode",
    ("wire.py", "*"): "encode",
    ("smb2.py", "*"): "encode", ("framing.py", "feed"): "demux read",
    ("framing.py", "*"): "demux read", ("stats.py", "*"): "decode",
    ("demux.py", "_read"): "demux read", ("demux.py", "read_for"): "demux read",
    ("demux.py", "_run"): "demux read", ("demux.py", "poll"): "demux read",
    ("demux.py", "_dispatch"): "decode", ("demux.py", "_dispatch_one"): "decode",
    ("demux.py", "*"): "wake-up",
    ("completion.py", "*"): "wake-up",
    ("iod.py", "*"): "wake-up",
    ("client.py", "_echo_task"): "task creation", ("client.py", "_check_task"): "task creation",
    ("client.py", "run_task_async"): "task creation",
    ("client.py", "_wait_sendable"): "credit gate", ("client.py", "_take_credits"): "credit gate",
    ("client.py", "_queue"): "credit gate", ("client.py", "_charge"): "credit gate",
    ("client.py", "_send_all"): "credit gate", ("client.py", "_send"): "credit gate",
    ("client.py", "_send_async"): "credit gate",
    ("client.py", "_park"): "wake-up", ("client.py", "_wake"): "wake-up",
    ("client.py", "_settle_future"): "future settle", ("client.py", "_future_done"): "future settle",
    ("client.py", "_finish"): "return", ("client.py", "_annotate"): "return",
    ("client.py", "_renewed"): "return",
    ("client.py", "*"): "return",
    ("_base.py", "wait"): "caller/bench", ("_base.py", "result"): "return",
    ("_base.py", "*"): "future settle",
    ("bench_percost.py", "*"): "caller/bench", ("profile_opcodes.py", "*"): "caller/bench",
    ("probe.py", "deadline"): "MID table", ("probe.py", "bound"): "MID table",
    ("config.py", "hard"): "MID table", ("config.py", "soft_bound"): "MID table",
    ("loopcheck.py", "check_not_in_loop"): "task creation",
    ("send.py", "<genexpr>"): "credit gate", ("send.py", "<listcomp>"): "MID table",
}
# Builtins by name (pstats shows them as "{method 'x' of 'y' objects}").
BUILTINS = {"sendmsg": "send", "sendall": "send", "recv_into": "demux read",
            "poll": "demux read", "acquire": "wake-up", "release": "wake-up",
            "set_result": "future settle", "monotonic": "MID table"}


def classify_function(path: str, func: str, caller_stage: str = "other") -> str:
    if path == "~":                          # a builtin: by name
        for name, stage in BUILTINS.items():
            if f"'{name}'" in func:
                return stage
        return caller_stage
    base = os.path.basename(path)
    if "smblayer" in path:
        base = base.lstrip("_")        # older trees: _send.py, _demux.py ...
        if "/smblayer/fs/" in path:
            return "fs layer"
    if base == "threading.py":
        return "wake-up"
    rule = RULES.get((base, func)) or RULES.get((base, "*"))
    if rule is not None and ("smblayer" in path or
                             base in ("_base.py", "bench_percost.py", "profile_opcodes.py")):
        return rule
    return caller_stage


def profile(tree: str, figure: str, args, samba) -> dict:
    import pstats
    with tempfile.NamedTemporaryFile(suffix=".prof", delete=False) as f:
        out = f.name
    argv = [sys.executable, os.path.join(HERE, "bench_percost.py"), "--child",
            "--host", samba.host, "--port", str(samba.port), "--share", "share",
            "--user", samba.username, "--file", "percost.txt",
            "--duration", str(args.duration), "--only", figure, "--profile", out]
    env = dict(os.environ, PYTHONPATH=tree, SMB_PASSWORD=samba.password)
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"profiling {figure} failed: {proc.stderr[-2000:]}")
    got = json.loads(lines[-1])[figure]
    requests = got["per_s"] * args.duration if "per_s" in got else \
        max(200, int(args.duration * 4000))
    stats = pstats.Stats(out).stats
    os.unlink(out)
    seconds: "collections.Counter[str]" = collections.Counter()
    hot: "collections.Counter[str]" = collections.Counter()
    for (path, _line, func), (_cc, _nc, tottime, _ct, callers) in stats.items():
        caller_stage = "other"
        if path == "~" and callers:
            # a builtin's time goes to the stage of its heaviest caller
            (cpath, _cl, cfunc), _ = max(callers.items(), key=lambda kv: kv[1][2])
            caller_stage = classify_function(cpath, cfunc)
        seconds[classify_function(path, func, caller_stage)] += tottime
        hot[f"{os.path.basename(path)}:{func}"] += tottime
    if args.leaves:
        for name, t in hot.most_common(args.leaves):
            print(f"#   {t / requests * 1e6:7.2f} µs  {name}", file=sys.stderr)
    profiled = sum(seconds.values()) / requests * 1e6
    scale = got["cpu_us"] / profiled if profiled else 0.0
    return {"cpu_us": got["cpu_us"], "profiled_us": profiled,
            "rate": got.get("per_s") or 1e6 / got["us"],
            "stages": {s: seconds[s] / requests * 1e6 * scale for s in STAGES}}


@contextlib.contextmanager
def percost_samba():
    """A private Samba whose share holds the workloads' ``percost.txt``."""
    sys.path.insert(0, ROOT)
    from smblayer import fs
    from smblayer.testing.samba import SambaServer
    with SambaServer() as samba:
        with fs.connect(samba.host, "share", samba.username, samba.password,
                        port=samba.port) as tree:
            with tree.open("percost.txt", "wb") as f:
                f.write(b"x" * 100)
        yield samba


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", help="NAME=PATH (default: this tree)")
    p.add_argument("--figures", default="sync,threads16,async16,stat16")
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--leaves", type=int, default=0, help="print the N hottest functions")
    args = p.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {"this": ROOT}
    figures = args.figures.split(",")
    results = {}
    with percost_samba() as samba:
        for figure in figures:              # trees interleaved within each figure
            for name, path in trees.items():
                results[(figure, name)] = profile(path, figure, args, samba)
                print(f"# {figure} {name}: {results[(figure, name)]['cpu_us']:.0f} cpu µs",
                      file=sys.stderr, flush=True)
    cols = list(results)
    print(f"{'stage (CPU µs/request)':<24}" + "".join(f"{f + ' ' + n:>18}" for f, n in cols))
    for stage in STAGES:
        print(f"{stage:<24}" + "".join(f"{results[c]['stages'][stage]:>18.1f}" for c in cols))
    print(f"{'(profiled total)':<24}" + "".join(f"{results[c]['profiled_us']:>18.1f}"
                                                for c in cols))
    print(f"{'total':<24}" + "".join(f"{results[c]['cpu_us']:>18.1f}" for c in cols))
    print(f"{'requests/s (loaded box)':<24}" + "".join(f"{results[c]['rate']:>18,.0f}"
                                                     for c in cols))
    if args.json:
        print(json.dumps({f"{f} {n}": v for (f, n), v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
