#!/usr/bin/env python3
"""The long fuzz campaign over smblayer's parsers (issue 26).

    tools/fuzz.py --minutes 60                 every target, the time shared out
    tools/fuzz.py --minutes 5 --target dfs     one target
    tools/fuzz.py --capture                    re-seed tests/vectors/fuzz/corpus
                                               from our own traffic against Samba
    tools/fuzz.py --coverage                   coverage of the corpora only

Theory of operation
-------------------
The targets and their rule live in :mod:`smblayer.testing.fuzzing`.  The
campaign runs one target at a time, each in its own process (``--worker``)
under atheris (libFuzzer, coverage-guided, the smblayer modules
instrumented), seeded from the target's corpus; new interesting inputs go to
``--workdir``/corpus/<target>.  A worker never stops at a crash: it records
each distinct one (exception type and the innermost smblayer frame) under
``--workdir``/crashes and goes on.  Without atheris the worker falls back to
the built-in mutator (not coverage-guided; the table says which ran).

At the end the corpora (seed + grown) are replayed under coverage.py
(``--coverage-replay``, a fresh process, so module-level lines count) and
line and branch coverage of proto/, security/, rpc/ and the fs parsers is
printed with the inputs run per target.  ``--json`` writes the figures.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COVERED = ("smblayer/proto/", "smblayer/security/", "smblayer/rpc/", "smblayer/fs/dfs.py",
           "smblayer/fs/smb1ops.py", "smblayer/fs/smb2ops.py", "smblayer/fs/session.py",
           "smblayer/fs/watch.py")
_EAGER = ("smblayer.proto.framing", "smblayer.proto.smb1", "smblayer.proto.smb2",
          "smblayer.proto.commands", "smblayer.proto.negotiate", "smblayer.security.crypto",
          "smblayer.security.auth", "smblayer.rpc", "smblayer.rpc.srvsvc", "smblayer.fs.dfs",
          "smblayer.fs.smb1ops", "smblayer.fs.smb2ops", "smblayer.fs.session", "smblayer.task")


# --- worker: one target under atheris -----------------------------------------------------

def _signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/smblayer/" in f.filename
              and "/testing/" not in f.filename]
    where = f"{pathlib.Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__}@{where}"


def _fast_again(fuzzing, target, data: bytes) -> bool:
    """A slow input is a hang only if it is slow again, twice."""
    for _ in range(2):
        try:
            fuzzing.check(target, data)
            return True
        except fuzzing.FuzzCrash as crash:
            if crash.error is not None:
                return False
    return False


def worker(args) -> int:
    import importlib
    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is not None:
        with atheris.instrument_imports(include=["smblayer"]):
            for name in _EAGER:
                importlib.import_module(name)
            from smblayer.testing import fuzzing
    else:
        from smblayer.testing import fuzzing
    target = fuzzing.TARGETS[args.worker]
    work = pathlib.Path(args.workdir)
    corpus_dir = work / "corpus" / target.name
    crash_dir = work / "crashes"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    crash_dir.mkdir(parents=True, exist_ok=True)
    seen = set()
    count = [0]

    def one(data: bytes) -> None:
        count[0] += 1
        try:
            fuzzing.check(target, data)
        except fuzzing.FuzzCrash as crash:
            if crash.error is None and _fast_again(fuzzing, target, data):
                return          # a stall of this nice'd process under load, not the input
            sig = _signature(crash.error) if crash.error is not None else "hang"
            if sig not in seen:
                seen.add(sig)
                name = f"{target.name}-{re.sub(r'[^A-Za-z0-9_.@:]', '_', sig)}.bin"
                (crash_dir / name).write_bytes(data)
                print(f"CRASH {target.name} {sig}: {crash}", file=sys.stderr, flush=True)

    seed_dir = fuzzing.VECTORS / "corpus" / target.name
    if atheris is not None:
        argv = [sys.argv[0], str(corpus_dir)] + ([str(seed_dir)] if seed_dir.is_dir() else []) + [
            f"-max_total_time={max(1, int(args.seconds))}", "-timeout=10",
            "-rss_limit_mb=1536", "-max_len=16384", "-print_final_stats=1",
            "-reload=0", "-close_fd_mask=1"]
        atheris.Setup(argv, one)
        atheris.Fuzz()          # exits the process when the time is up
        return 0
    pool = fuzzing.corpus(target.name) or [b""]
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            one(fuzzing.mutate(rng, rng.choice(pool), pool))
    print(f"stat::number_of_executed_units: {count[0]}", file=sys.stderr)
    return 0


# --- coverage replay ------------------------------------------------------------------------

def coverage_replay(args) -> int:
    import coverage
    cov = coverage.Coverage(branch=True, data_file=None,
                            include=[str(ROOT / p) + ("/*" if p.endswith("/") else "")
                                     for p in COVERED])
    cov.start()
    from smblayer.testing import fuzzing
    for name, target in fuzzing.TARGETS.items():
        dirs = [fuzzing.VECTORS / "corpus" / name] + [pathlib.Path(d) / "corpus" / name
                                                      for d in args.coverage_dirs]
        for folder in dirs:
            if folder.is_dir():
                for path in folder.iterdir():
                    try:
                        fuzzing.check(target, path.read_bytes(), time_bound=60)
                    except fuzzing.FuzzCrash:
                        pass
        for tname, _file, data in fuzzing.regression_vectors():
            if tname == name:
                try:
                    fuzzing.check(target, data, time_bound=60)
                except fuzzing.FuzzCrash:
                    pass
    cov.stop()
    out = pathlib.Path(args.coverage_out)
    cov.json_report(outfile=str(out))
    return 0


def coverage_table(report: dict) -> dict:
    groups: dict = {}
    for path, info in report["files"].items():
        rel = str(pathlib.Path(path).resolve().relative_to(ROOT))
        group = next(p for p in COVERED if rel.startswith(p))
        s = info["summary"]
        keys = (group, rel) if group.endswith("/") else (group,)   # a folder: its files too
        for key in keys:
            g = groups.setdefault(key, [0, 0, 0, 0])
            g[0] += s["covered_lines"]
            g[1] += s["num_statements"]
            g[2] += s["covered_branches"]
            g[3] += s["num_branches"]
    return {k: {"lines": f"{v[0]}/{v[1]}", "lines_pct": round(100 * v[0] / max(1, v[1]), 1),
                "branches": f"{v[2]}/{v[3]}",
                "branches_pct": round(100 * v[2] / max(1, v[3]), 1)}
            for k, v in sorted(groups.items())}


def run_coverage(dirs) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "cov.json"
        subprocess.run([sys.executable, __file__, "--coverage-replay", "--coverage-out", str(out)]
                       + [a for d in dirs for a in ("--coverage-dir", str(d))], check=True)
        return coverage_table(json.loads(out.read_text()))


# --- the campaign -------------------------------------------------------------------------

def campaign(args) -> int:
    from smblayer.testing import fuzzing
    names = [args.target] if args.target else list(fuzzing.TARGETS)
    work = pathlib.Path(args.workdir[-1] if args.workdir else
                        tempfile.mkdtemp(prefix="smblayer-fuzz-"))
    seconds = max(2.0, args.minutes * 60 / len(names))
    try:
        import atheris  # noqa: F401
        engine = "atheris (libFuzzer, coverage-guided)"
    except ImportError:
        engine = "built-in mutator (atheris not installed)"
    print(f"engine: {engine}; workdir {work}; {seconds:.0f} s per target", flush=True)
    rows = []
    for name in names:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--workdir", str(work),
                               "--seconds", str(seconds), "--seed", str(args.seed)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        took = time.monotonic() - started
        found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
        inputs = int(found[-1]) if found else 0
        crashes = sorted(set(re.findall(r"^CRASH (\S+ \S+?): fuzz target", proc.stderr, re.M)))
        grown = len(list((work / "corpus" / name).glob("*")))
        rows.append({"target": name, "inputs": inputs, "seconds": round(took, 1),
                     "rate": round(inputs / took) if took else 0, "corpus": grown,
                     "crashes": crashes, "exit": proc.returncode})
        print(f"{name:16} {inputs:>10} inputs {took:7.0f} s {rows[-1]['rate']:>7}/s "
              f"corpus {grown:5} crashes {len(crashes)} exit {proc.returncode}", flush=True)
        for crash in crashes:
            print(f"    {crash}", flush=True)
        if proc.returncode not in (0,) and not found:
            print(proc.stderr[-2000:], file=sys.stderr)
    total = sum(r["inputs"] for r in rows)
    print(f"total: {total} inputs in {sum(r['seconds'] for r in rows):.0f} s", flush=True)
    table = run_coverage([work])
    print("coverage (seed + grown corpora, lines and branches):")
    for group, c in table.items():
        print(f"  {group:28} lines {c['lines']:>10} {c['lines_pct']:5.1f}%   "
              f"branches {c['branches']:>10} {c['branches_pct']:5.1f}%")
    crashes = sorted({c for r in rows for c in r["crashes"]})
    print(f"distinct crashes: {len(crashes)} (inputs in {work / 'crashes'})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"engine": engine, "targets": rows, "total_inputs": total, "coverage": table,
             "crashes": crashes}, indent=2))
    return 1 if crashes else 0


# --- seeding the corpus from our own traffic against Samba ------------------------------------

def capture(args) -> int:
    import fuzz_seed
    out = pathlib.Path(args.corpus_out) if args.corpus_out else None
    counts = fuzz_seed.capture(out)
    for name, n in sorted(counts.items()):
        print(f"{name:16} {n} seeds")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=1.0, help="campaign length (all targets)")
    p.add_argument("--target", help="fuzz only this target")
    p.add_argument("--workdir", action="append",
                   help="grown corpora and crashes (default: a temp dir)")
    p.add_argument("--seed", type=int, default=26)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--capture", action="store_true", help="re-seed the corpus from Samba")
    p.add_argument("--corpus-out",
                   help="with --capture: where (default tests/vectors/fuzz/corpus)")
    p.add_argument("--coverage", action="store_true",
                   help="coverage of the seed corpus and of the grown corpora of "
                        "--workdir (repeatable)")
    p.add_argument("--list", action="store_true", help="list the targets")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--coverage-replay", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--coverage-out", help=argparse.SUPPRESS)
    p.add_argument("--coverage-dir", dest="coverage_dirs", action="append", default=[],
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.workdir = args.workdir[-1]
        return worker(args)
    if args.coverage_replay:
        return coverage_replay(args)
    if args.capture:
        return capture(args)
    if args.list:
        from smblayer.testing import fuzzing
        for name, target in fuzzing.TARGETS.items():
            print(f"{name:16} {target.about}")
        return 0
    if args.coverage:
        for group, c in run_coverage(args.workdir or []).items():
            print(f"  {group:28} lines {c['lines']:>10} {c['lines_pct']:5.1f}%   "
                  f"branches {c['branches']:>10} {c['branches_pct']:5.1f}%")
        return 0
    return campaign(args)


if __name__ == "__main__":
    sys.exit(main())
