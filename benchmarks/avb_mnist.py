"""Table and figure of the AVB / IWAVB / IWAE experiment (benchmarks/scripts/avb_mnist.sh, issue 11).

    python benchmarks/avb_mnist.py runs/avb-mnist [runs/avb-mnist-ac ...] [--results benchmarks/results]

Reads OUT/l<latent>/<method>-k<K>/ run folders: the newest AIS and IW evaluations (per-point values, so
IW and AIS are compared on the same points), bdmc.json where present, and metrics.jsonl (the
discriminator's accuracy and KL estimate). Writes avb_mnist_table.md, avb_mnist.json and
avb_discriminator.png into --results (default: OUT)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Table 1 of Gómez-Sancho & Hernández-Lobato (2020), MNIST: -NLL by AIS (8 chains, 1000 steps),
#: conv nets, 150000 steps, grey-level MNIST, adaptive contrast
PAPER = {(8, 1): -90.23, (8, 5): -90.16, (8, 10): -90.19, (32, 1): -80.74, (32, 5): -80.49, (32, 10): -79.77}
ORDER = ["iwae-k1", "iwae-k5", "iwae-k10", "avb-k1", "iwavb-k5", "iwavb-k10"]


def newest(run: Path, prefix: str) -> dict[str, Any] | None:
    files = sorted(run.glob(f"evaluations/{prefix}*-test-*.json"), key=lambda p: p.stat().st_mtime)
    files = [f for f in files if not f.name.endswith("-per-point.json")]
    if not files:
        return None
    summary = json.loads(files[-1].read_text())
    per_point = files[-1].with_name(files[-1].stem + "-per-point.npy")
    summary["_values"] = np.load(per_point) if per_point.exists() else None
    return summary


def train_records(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    return [r for r in map(json.loads, lines) if r.get("kind") == "train"]


def row(latent: int, run: Path) -> dict[str, Any]:
    method, k = run.name.rsplit("-k", 1)
    config = json.loads((run / "config.json").read_text())
    if config.get("method_options", {}).get("adaptive_contrast"):
        method += "+ac"  # adaptive contrast: T compares q with N(mean, std of q), not with p(z)
    ais, iw = newest(run, "ais-"), newest(run, "iw-")
    records = train_records(run)
    last = records[-1] if records else {}
    out: dict[str, Any] = {
        "latent": latent, "method": method, "K": int(k), "run": str(run),
        "steps": last.get("step"), "train_pts_per_s": float(np.mean([r["points_per_sec"] for r in records]))
        if records else None,
        "ais": ais and ais["log_likelihood"], "ais_se": ais and ais["stderr"], "ais_points": ais and ais["n_points"],
        "ais_settings": ais and ais["estimator"], "ais_acceptance": ais and ais.get("mean_acceptance"),
        "iw": iw and iw["log_likelihood"], "iw_se": iw and iw["stderr"],
        "active_units": (ais or {}).get("active_units"),
        "final_discriminator_accuracy": last.get("discriminator_accuracy"),
        "final_kl_estimate": last.get("kl_estimate"), "final_train_objective": last.get("bound_estimate"),
        "paper_ll": PAPER.get((latent, int(k))) if method != "iwae" else None,
    }
    if ais and iw and ais["_values"] is not None and iw["_values"] is not None:
        d = ais["_values"] - iw["_values"][: len(ais["_values"])]
        out["ais_minus_iw"] = float(d.mean())
    bdmc = run / "bdmc.json"
    if bdmc.exists():
        b = json.loads(bdmc.read_text())
        out["bdmc"] = {key: b[key] for key in ("lower", "upper", "gap", "n_points", "estimator")}
    return out


def paired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AIS per point of each K > 1 run minus its family's K = 1 run (same latent, same test points)."""
    out = []
    for r in rows:
        base = next((b for b in rows if b["latent"] == r["latent"] and b["K"] == 1
                     and b["method"].replace("avb", "iwavb") == r["method"]), None)
        if r["K"] > 1 and base is not None:
            a, b = newest(Path(r["run"]), "ais-"), newest(Path(base["run"]), "ais-")
            if a and b and a["_values"] is not None and b["_values"] is not None:
                d = a["_values"] - b["_values"]
                out.append({"latent": r["latent"], "run": f"{r['method']}-k{r['K']}", "minus": f"{base['method']}-k1",
                            "mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d)))})
    return out


def fmt(v: Any, nd: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| latent | method | K | AIS test LL (± s.e.) | IW-5000 test LL | AIS − IW | paper (IWAVB, AIS) "
            "| disc. acc. (last) | KL est. (last) | train objective (last) | active units | train pts/s |")
    lines = [head, "|" + " --- |" * 12]
    for r in rows:
        lines.append(
            f"| {r['latent']} | {r['method']} | {r['K']} | {fmt(r['ais'])} ± {fmt(r['ais_se'])} | {fmt(r['iw'])} "
            f"| {fmt(r.get('ais_minus_iw'))} | {fmt(r['paper_ll'])} | {fmt(r['final_discriminator_accuracy'], 3)} "
            f"| {fmt(r['final_kl_estimate'])} | {fmt(r['final_train_objective'])} | {r['active_units']} "
            f"| {fmt(r['train_pts_per_s'], 0)} |")
    bd = [r for r in rows if "bdmc" in r]
    if bd:
        lines += ["", "| run | BDMC lower (forward AIS) | upper (reverse AIS) | gap | points | settings |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| l{r['latent']}/{r['method']}-k{r['K']} | {fmt(r['bdmc']['lower'])} | {fmt(r['bdmc']['upper'])} "
                  f"| {fmt(r['bdmc']['gap'])} | {r['bdmc']['n_points']} | {r['bdmc']['estimator']} |" for r in bd]
    return "\n".join(lines) + "\n"


def figure(runs: dict[str, Path], path: Path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        rec = train_records(run)
        steps = [r["step"] for r in rec]
        style = "--" if "+ac" in label else "-"
        a1.plot(steps, [r["discriminator_accuracy"] for r in rec], style, label=label, lw=1.2)
        a2.plot(steps, [r["kl_estimate"] for r in rec], style, label=label, lw=1.2)
    a1.axhline(0.5, color="grey", ls=":", lw=1)
    a1.set(xlabel="step", ylabel="discriminator accuracy (50-step mean)",
           title="T: q-draws vs p(z)-draws (+ac: vs r(z|x))")
    a2.set(xlabel="step", ylabel="mean estimated log q(z|x)/p(z)  (nats)",
           title="KL(q(z|x) || p(z)) as estimated through T")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="+")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    results = Path(args.results) if args.results else Path(args.out[0])
    found = []  # (latent, order, root index, run)
    for i, root in enumerate(map(Path, args.out)):
        for ldir in root.glob("l*"):
            if ldir.is_dir() and ldir.name[1:].isdigit():
                found += [(int(ldir.name[1:]), j, i, ldir / n) for j, n in enumerate(ORDER)
                          if (ldir / n / "config.json").exists()]
    rows, implicit = [], {}
    for latent, _, _, run in sorted(found, key=lambda f: f[:3]):
        r = row(latent, run)
        rows.append(r)
        if not run.name.startswith("iwae"):
            implicit[f"latent {latent}, {r['method']}-k{r['K']}"] = run
    results.mkdir(parents=True, exist_ok=True)
    diffs = paired(rows)
    (results / "avb_mnist.json").write_text(json.dumps({"rows": rows, "paired_ais_vs_k1": diffs}, indent=1) + "\n")
    head = "\n| latent | run − K = 1 run | AIS diff. | ± s.e. (paired) |\n| --- | --- | --- | --- |\n"
    lines = "".join(f"| {d['latent']} | {d['run']} − {d['minus']} | {d['mean']:+.2f} | {d['se']:.2f} |\n"
                    for d in diffs)
    (results / "avb_mnist_table.md").write_text(table(rows) + head + lines)
    figure(implicit, results / "avb_discriminator.png")
    print(table(rows), end="")


if __name__ == "__main__":
    main()
