"""The measurements of benchmarks/gpu.py, one function per part; each returns a JSON-able dict. Run one by
one in child processes by gpu.py, so that a part that fails or hangs (a CUDA error poisons its process)
leaves the others alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import torch

from harness import interleaved_blocks, summarise, timer
from peers import D, PlainIWAE, deepem_step, plain_step

ROOT = Path(__file__).resolve().parents[1]


def _python(args: list[str], timeout: float, **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               **env_vars)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def cuda_tests(settings: dict) -> dict:
    """The CUDA tests (device paths, the device decision without a synchronisation, the CUDA-graph step
    against the eager one under each precision; skipped on a machine without CUDA) and, with
    `compile_tests`, the compiled step against the eager one."""
    files, report = settings["test_files"], Path(settings["out"]) / "junit.xml"
    env = {"DEEPEM_COMPILE_TESTS": "1"} if settings.get("compile_tests") else {}
    proc = _python(["-m", "pytest", *files, "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={report}"],
                   settings["timeout"], **env)
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return {"files": files, "returncode": proc.returncode, "passed": counts["tests"] - counts["failures"]
            - counts["errors"] - counts["skipped"], "failed": counts["failures"] + counts["errors"],
            "skipped": counts["skipped"], "tail": proc.stdout[-1500:]}


def nccl_data_parallel(settings: dict) -> dict:
    """A one-process NCCL group: an all-reduce of a gradient-sized CUDA tensor, as data-parallel training
    averages gradients (training/distributed.py); on a machine without CUDA, gloo on CPU instead."""
    import torch.distributed as dist

    backend = "nccl" if settings["device"].startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method="tcp://127.0.0.1:29533", rank=0, world_size=1)
    try:
        x = torch.arange(1_000_000, dtype=torch.float32, device=settings["device"])
        expected = x.clone()
        dist.all_reduce(x)
        start = time.perf_counter()
        for _ in range(10):
            dist.all_reduce(x)
        if settings["device"].startswith("cuda"):
            torch.cuda.synchronize()
        return {"backend": backend, "all_reduce_matches": bool(torch.equal(x, expected)),
                "all_reduce_ms": (time.perf_counter() - start) / 10 * 1e3}
    finally:
        dist.destroy_process_group()


def _graphed(body: Callable[[], None], opt: torch.optim.Optimizer) -> Callable[[], None]:
    """body (forward and backward) then opt.step(), captured once as a CUDA graph; returns its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            body()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        body()
        opt.step()
    return graph.replay


def graphed_plain_step(x: torch.Tensor, k: int) -> Callable[[], None]:
    """Plain PyTorch's whole step (forward, backward, Adam) captured once as a CUDA graph and replayed."""
    model = PlainIWAE().to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4, capturable=True)
    return _graphed(lambda: model.loss(x, k).backward(), opt)


def graphed_deepem_step(x: torch.Tensor, k: int, precision: str = "32") -> Callable[[], None]:
    """deepem's own CUDA-graph step as the trainer takes it with --cuda-graph (training/cuda_graph.py: the
    TrainStep with its device decision, captured after its warm-up steps and replayed), under `precision`."""
    from deepem.methods import make_method
    from deepem.models import ModelConfig, make_model
    from deepem.training.config import TrainConfig
    from deepem.training.trainer import Trainer

    config = TrainConfig(dataset="custom", method="iwae", lr=1e-3, batch_size=x.shape[0], device=str(x.device),
                         precision=precision, cuda_graph=True)
    trainer = Trainer(make_model(ModelConfig(), D), make_method("iwae", particles=k), x, None, config,
                      progress=False, log=lambda line: None)
    graphed = trainer.graphed
    for _ in range(graphed.warmup + 1):
        graphed(x)
    assert graphed.last == "capture", graphed.last
    return lambda: graphed(x)


def compiled_deepem_step(x: torch.Tensor, k: int) -> Callable[[], None]:
    """deepem's step with --compile (training/compiled.py), compiled by its first call."""
    from deepem.methods import make_method
    from deepem.models import ModelConfig, make_model
    from deepem.training.step import TrainStep

    model = make_model(ModelConfig(), D).to(x.device)
    step = TrainStep(model, make_method("iwae", particles=k), lr=1e-3, compile=True)
    return lambda: step(x)


def compiled_plain_step(x: torch.Tensor, k: int) -> Callable[[], None]:
    """Plain PyTorch's step with the loss (forward and backward) compiled by inductor with CUDA graphs."""
    model = PlainIWAE().to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    loss = torch.compile(model.loss, mode="reduce-overhead")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss(x, k).backward()
        opt.step()
    return step


def train_step(settings: dict) -> dict:
    """deepem's IWAE step under each precision, eager and as its own CUDA graph, and compiled (float32),
    against plain PyTorch eager, a CUDA-graphed and a compiled plain step, at K and each B, in interleaved
    blocks; ratios are seconds per step over deepem's float32 eager step's ("deepem")."""
    device, k = settings["device"], settings["k"]
    on_gpu = device.startswith("cuda")
    rows = []
    for batch in settings["batches"]:
        x = torch.bernoulli(torch.full((batch, D), 0.13, device=device))
        torch.manual_seed(0)
        # name -> (maker, its keyword arguments); each maker takes (x, k) first
        makers: dict[str, tuple[Callable[..., Callable[[], object]], dict]] = {}
        for precision in settings["precisions"]:
            suffix = "" if precision == "32" else f" {precision}"
            makers[f"deepem{suffix}"] = (deepem_step, {"precision": precision})
            makers[f"deepem{suffix} CUDA graph"] = (graphed_deepem_step, {"precision": precision})
        makers["deepem compile"] = (compiled_deepem_step, {})
        makers["plain"] = (plain_step, {})
        makers["plain CUDA graph"] = (graphed_plain_step, {})
        makers["plain torch.compile"] = (compiled_plain_step, {})
        contenders: dict[str, Callable[[], object]] = {}
        skipped = {}
        for name, (make, options) in makers.items():
            if not on_gpu and ("CUDA graph" in name or "compile" in name):
                skipped[name] = "needs CUDA" if "CUDA graph" in name else "on a GPU only (minutes to compile on CPU)"
                continue
            try:
                contenders[name] = make(x, k, **options)
                contenders[name]()
            except Exception as e:  # recorded, and the rest still runs
                contenders.pop(name, None)
                skipped[name] = f"{type(e).__name__}: {str(e)[:300]}"
        summary = summarise(interleaved_blocks({name: timer(fn, device) for name, fn in contenders.items()},
                                               settings["blocks"]), "deepem")
        best = min((n for n in summary if n.startswith("deepem")), key=lambda n: summary[n]["seconds_per_call"])
        rows.append({"k": k, "batch": batch, "contenders": summary, "skipped": skipped, "best_deepem": best,
                     "deepem_vs_plain_eager": summary["plain"]["seconds_per_call"] / summary[best]["seconds_per_call"]})
    return {"rows": rows}


def vectorised_seeds(settings: dict) -> dict:
    """benchmarks/vectorised_seeds.py on the device; its rows, and whether vectorising pays at the smallest K."""
    out = Path(settings["out"]) / "vectorised_seeds_part"
    args = ["benchmarks/vectorised_seeds.py", "--device", settings["device"], "--repeats", "2", "--steps",
            str(settings["vectorised_steps"]), "--seeds", settings["vectorised_seeds"], "--particles",
            settings["vectorised_particles"], "--out", str(out)]
    proc = _python(args, settings["timeout"])
    if proc.returncode != 0:
        raise RuntimeError(f"vectorised_seeds.py exited {proc.returncode}: {proc.stderr[-800:]}")
    suffix = "" if settings["device"] == "cpu" else f"_{settings['device'].replace(':', '')}"
    rows = json.loads((out / f"vectorised_seeds{suffix}.json").read_text())["rows"]
    small_k = min(r["particles"] for r in rows)
    best = max((r for r in rows if r["particles"] == small_k and r["seeds"] > 1), key=lambda r: r["speedup"])
    return {"rows": rows, "smallest_k": small_k, "best_speedup_at_smallest_k": best["speedup"],
            "best_seeds": best["seeds"]}


def iw_test_set(settings: dict) -> dict:
    """IW log-likelihood with K particles of the binarised-MNIST test images ($DEEPEM_DATA or
    ../shared/data), deepem's evaluation path, a freshly initialised model (speed does not depend on
    the weights); seconds from data on the device to the mean on the host."""
    from deepem.data.images import load_binarized_mnist
    from deepem.evaluation.loglik import iw_log_likelihood_batch
    from deepem.inference.numerics import flush_denormals
    from deepem.models import ModelConfig, make_model

    data_dir = Path(os.environ.get("DEEPEM_DATA", ROOT.parent / "shared" / "data"))
    test = load_binarized_mnist(data_dir).test[:settings["eval_points"]].to(settings["device"])
    model = make_model(ModelConfig(), test.shape[1]).to(settings["device"]).eval()
    k, batch = settings["eval_k"], settings["eval_batch"]
    sync = torch.cuda.synchronize if settings["device"].startswith("cuda") else (lambda: None)
    with torch.no_grad(), flush_denormals():
        iw_log_likelihood_batch(model, test[:batch], k)  # warm-up: kernels, allocator
        sync()
        start = time.perf_counter()
        total = sum(iw_log_likelihood_batch(model, test[i:i + batch], k).sum() for i in range(0, len(test), batch))
        mean = float(total) / len(test)
        seconds = time.perf_counter() - start
    return {"points": len(test), "k": k, "batch": batch, "seconds": seconds, "mean_log_likelihood": mean}


PARTS: dict[str, Callable[[dict], dict]] = {"cuda tests": cuda_tests, "nccl data-parallel": nccl_data_parallel,
                                            "train step": train_step, "vectorised seeds": vectorised_seeds,
                                            "iw test set": iw_test_set}
