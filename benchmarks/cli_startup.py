"""How fast the `deepem` command answers (issue 23, item 12): the wall time of `deepem --help`, of every
`deepem SUBCOMMAND --help`, of argument errors and of `deepem list`, each the median of several fresh
processes, beside the bare interpreter's start. Targets on an idle 2-core machine: < 1 s for help and
errors, < 2 s for `list`. The load average is recorded with the times, since a busy machine slows every
start. The import profile (`python -X importtime -m deepem --help`) says which imports dominate and which
deepem module first pulls in each heavy dependency.

    python benchmarks/cli_startup.py [--repeats 5] [--out benchmarks/results]   # writes cli_startup.{md,json}
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import command_line, contention, finish, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "numpy", "tqdm", "pandas")
DEFER = ("torch", "sklearn", "scipy", "matplotlib", "pandas")  # each costs 0.5-3 s to import (numpy ~0.2 s)
HELP_TARGET_S, LIST_TARGET_S = 1.0, 2.0


def environment() -> dict[str, str]:
    """This checkout's sources first on the path, so the timed command is the one in this tree."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one fresh process. On a loaded machine the wall time grows
    with the load while the CPU time (user + system) stays near what an idle machine's wall time would be
    (the start is one thread that reads and imports)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def subcommands(env: dict[str, str]) -> list[str]:
    """The subcommands as `deepem --help` lists them ({train,evaluate,...})."""
    out = subprocess.run([sys.executable, "-m", "deepem", "--help"], capture_output=True, text=True, env=env,
                         check=True).stdout
    found = re.search(r"\{([\w,-]+)\}", out)
    if found is None:
        raise SystemExit("could not read the subcommands from `deepem --help`")
    return found.group(1).split(",")


def cases(subs: list[str]) -> list[tuple[str, list[str], float, int]]:
    """(label, deepem arguments, target seconds, expected exit code)."""
    out = [("deepem --help", ["--help"], HELP_TARGET_S, 0)]
    out += [(f"deepem {s} --help", [s, "--help"], HELP_TARGET_S, 0) for s in subs]
    out += [("deepem nosuchcommand (error)", ["nosuchcommand"], HELP_TARGET_S, 2),
            ("deepem train --epochs abc (error)", ["train", "--epochs", "abc"], HELP_TARGET_S, 2),
            ("deepem list", ["list"], LIST_TARGET_S, 0)]
    return out


def import_profile(env: dict[str, str]) -> tuple[list[dict[str, object]], dict[str, list[str]]]:
    """The 15 slowest imports by cumulative time, and for each heavy package, the chain of imports that
    first brought it in (outermost first), from `-X importtime` (post-order: a line's parent is the next
    line indented one level less)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-m", "deepem", "--help"], capture_output=True,
                         text=True, env=env, check=False).stderr
    lines = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            lines.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    top = sorted(lines, key=lambda x: -x[1])
    slowest = [{"module": name, "cumulative_s": cum / 1e6, "self_s": own / 1e6} for own, cum, _, name in top[:15]]
    chains: dict[str, list[str]] = {}
    for i, (_, cum, level, name) in enumerate(lines):
        package = name.split(".")[0]
        if package in HEAVY and package == name and package not in chains:
            chain, want = [f"{name} ({cum / 1e6:.2f} s)"], level - 1
            for _, _, lv, parent in lines[i + 1:]:
                if lv == want:
                    chain.append(parent)
                    want -= 1
                if want < 0:
                    break
            chain = chain[::-1]  # the deepem modules on the way, the first other module, then the package
            ours = [m for m in chain if m.split(".")[0] == "deepem"]
            rest = chain[len(ours):]
            chains[package] = ours + rest[:1] + (["…", rest[-1]] if len(rest) > 2 else rest[1:])
    return slowest, chains


def heavy_imports_at_import_time(modules: list[str]) -> dict[str, list[str]]:
    """deepem module -> the heavy packages its source imports at module level (not inside a function):
    what must move (into the function that uses it, or out of the CLI's import path) for a fast start."""
    found = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        tree = ast.parse(Path(spec.origin).read_text())
        heavy = set()
        for node in tree.body:  # module level only; an import inside a function costs nothing at start
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            heavy |= {n.split(".")[0] for n in names if n.split(".")[0] in DEFER}
        if heavy:
            found[name] = sorted(heavy)
    return found


def loaded_deepem_modules(env: dict[str, str], argv: list[str]) -> list[str]:
    """The deepem modules a `deepem ARGV` process has loaded when it exits."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('\\nLOADED ' + ' '.join(sorted(m for m in sys.modules "
            "if m == 'deepem' or m.startswith('deepem.')))))\n"
            "import runpy; sys.argv = ['deepem', *sys.argv[1:]]; runpy.run_module('deepem', run_name='__main__')")
    err = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
                         check=False).stderr
    return err.rsplit("LOADED ", 1)[-1].split() if "LOADED " in err else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = environment()
    sys.path.insert(0, str(ROOT / "src"))  # the module scan reads this tree's sources, not an installed copy
    contention_record = contention()
    load_before = contention_record["load_average_before"]
    subs = subcommands(env)
    rows = []
    bare_runs = [timed([sys.executable, "-c", "pass"], env) for _ in range(args.repeats)]
    bare = sorted(t for t, _, _ in bare_runs)
    rows.append({"command": "python -c pass (interpreter alone)", "median_s": statistics.median(bare),
                 "median_cpu_s": statistics.median(c for _, c, _ in bare_runs),
                 "min_s": bare[0], "max_s": bare[-1], "target_s": None, "exit_code": 0, "meets_target": None,
                 "load_1min_before": load_before[0]})
    for label, argv, target, code in cases(subs):
        load = os.getloadavg()[0]
        runs = [timed([sys.executable, "-m", "deepem", *argv], env) for _ in range(args.repeats)]
        times = sorted(t for t, _, _ in runs)
        codes = sorted({c for _, _, c in runs})
        median, cpu = statistics.median(times), statistics.median(c for _, c, _ in runs)
        rows.append({"command": label, "median_s": median, "median_cpu_s": cpu, "min_s": times[0], "max_s": times[-1],
                     "target_s": target, "exit_code": codes[0] if len(codes) == 1 else codes,
                     "expected_exit_code": code, "meets_target": median < target, "load_1min_before": load})
        print(f"{label:45s} median {median:.2f} s (min {times[0]:.2f}, max {times[-1]:.2f}), cpu {cpu:.2f} s, "
              f"exit {codes}")
    finish(contention_record)
    slowest, chains = import_profile(env)
    heavy = {what: heavy_imports_at_import_time(loaded_deepem_modules(env, argv))
             for what, argv in (("deepem --help", ["--help"]), ("deepem list", ["list"]))}
    record = {"repeats": args.repeats, "rows": rows, "slowest_imports_of_help": slowest,
              "first_import_chain": chains, "heavy_imports_at_module_level": heavy}
    write_results(args.out, "cli_startup", f"CLI start-up time ({contention_record['date']})", markdown(record),
                  record, contention_record, command_line())
    print(f"wrote {args.out / 'cli_startup.md'} and .json")


def markdown(record: dict) -> str:
    out = [f"Each command in {record['repeats']} fresh processes (`python -m deepem ...`), median wall time. "
           "Targets (issue 23, item 12) are for an idle 2-core machine: under load every "
           "start is slower, so compare against the interpreter's own start in the first row.", "",
           "The CPU column (user + system time of the process) is close to what the wall time would be on an "
           "idle machine: the start is one thread importing modules.", "",
           "| command | median s | min s | max s | median CPU s | target s | exit code | meets target (wall) | "
           "load (1 min) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["rows"]:
        target = "" if r["target_s"] is None else f"< {r['target_s']:.0f}"
        meets = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "**no**")
        out.append(f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | "
                   f"{r['median_cpu_s']:.3f} | {target} | {r['exit_code']} | {meets} | {r['load_1min_before']:.1f} |")
    out += ["", "Slowest imports of `python -X importtime -m deepem --help` (cumulative, one run):", "",
            "| module | cumulative s | self s |", "| --- | --- | --- |"]
    out += [f"| `{r['module']}` | {r['cumulative_s']:.3f} | {r['self_s']:.3f} |"
            for r in record["slowest_imports_of_help"]]
    out += ["", "Which deepem import first brings in each heavy package on the `--help` path (outermost first):",
            ""]
    out += [f"- **{pkg}**: " + " → ".join(f"`{m}`" for m in chain)
            for pkg, chain in record["first_import_chain"].items()]
    for what, modules in record["heavy_imports_at_module_level"].items():
        out += ["", f"deepem modules loaded by `{what}` that import a heavy package at module level "
                "(each must import it inside the function that uses it, or leave the CLI's import path):", ""]
        layers: dict[tuple[str, str], list[str]] = {}
        for m, pkgs in modules.items():  # grouped by layer and packages: the list is long
            layers.setdefault((".".join(m.split(".")[:2]), ", ".join(pkgs)), []).append(m.split(".")[-1])
        out += [f"- `{layer}` ({len(names)} module{'s' if len(names) > 1 else ''}: {', '.join(names)}): {pkgs}"
                for (layer, pkgs), names in layers.items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
