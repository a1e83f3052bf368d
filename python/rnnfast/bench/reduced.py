"""Reduced-precision engines of `rnnfast bench` (opt-in: name them in --engines): rnnfast's int8 and
bfloat16 inference weights, PyTorch's dynamic-quantized LSTM/GRU (quantize_dynamic, qint8) and
ONNX Runtime's DynamicQuantizeLSTM (onnxruntime.quantization.quantize_dynamic). Each is checked
against float32 rnnfast with the accuracy bound of its format, and compared with the faster of
the float32 engines that ran."""
from __future__ import annotations

from . import engine_rnnfast, peer_onnx, peer_torch
from .configs import Spec, Unsupported

# max |y - y_fp32| / max(1, max |y_fp32|): the issue's bounds for rnnfast's two formats. The peers'
# int8 is their own design (torch: one scale per weight tensor, ~5e-2 here), so their check only
# guards against running a different model (a wrong gate order would be O(1)).
TOLERANCE = {"int8": 3e-2, "bfloat16": 1e-2}
PEER_TOLERANCE = 1e-1
ENGINES = ("rnnfast-int8", "rnnfast-bf16", "torch-int8", "onnxruntime-int8")
FLOAT32_ENGINES = ("rnnfast", "torch", "onnxruntime")


def _inference_only(spec: Spec) -> None:
    if spec.kind == "train":
        raise Unsupported("reduced-precision weights are for inference")


def rnnfast_factory(weights: str):
    def make(cell: str, spec: Spec, state_dict, data: dict, threads: int):
        _inference_only(spec)
        case = engine_rnnfast.make_case(cell, spec, state_dict, data, threads)
        case.model.set_inference_weights(weights)
        if spec.kind == "stream":
            case.stream = case.model.stream(batch_size=spec.B)
        case.tolerance = TOLERANCE[weights]
        return case
    return make


class _TorchQuantized(peer_torch.InferenceCase):
    def __init__(self, cell, spec, weights, data, threads):
        super().__init__(cell, spec, weights, data, threads)
        torch = self.torch

        class Holder(torch.nn.Module):  # quantize_dynamic swaps children, not the root module
            def __init__(self, rnn):
                super().__init__()
                self.rnn = rnn

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice (torchao), not ours to fix
            holder = torch.ao.quantization.quantize_dynamic(Holder(self.module), {torch.nn.LSTM, torch.nn.GRU},
                                                            dtype=torch.qint8)
        self.module = holder.rnn
        self.tolerance = PEER_TOLERANCE


def torch_int8(cell: str, spec: Spec, weights, data: dict, threads: int):
    peer_torch.set_threads(threads)
    _inference_only(spec)
    if cell == "rnn" or spec.kind != "inference":
        raise Unsupported("torch's dynamic quantization covers nn.LSTM and nn.GRU sequences")
    return _TorchQuantized(cell, spec, weights, data, threads)


def onnx_int8(cell: str, spec: Spec, weights, data: dict, threads: int):
    peer_onnx._import()
    _inference_only(spec)
    if cell != "lstm":
        raise Unsupported("ONNX Runtime's dynamic quantization has an int8 LSTM only (DynamicQuantizeLSTM)")
    cls = peer_onnx.StreamCase if spec.kind == "stream" else peer_onnx.InferenceCase
    case = cls(cell, spec, weights, data, threads, quantize=True)
    case.tolerance = PEER_TOLERANCE
    return case


FACTORIES = {"rnnfast-int8": rnnfast_factory("int8"), "rnnfast-bf16": rnnfast_factory("bfloat16"),
             "torch-int8": torch_int8, "onnxruntime-int8": onnx_int8}


def ratios(results: list[dict]) -> list[dict]:
    """Per (config, cell) with reduced-precision rows: each one's speed-up over the faster float32 engine
    (ratio of medians, > 1: faster), and that engine."""
    rows = []
    for r in results:
        fp32 = {n: e["median_s"] for n, e in r["engines"].items()
                if n in FLOAT32_ENGINES and e.get("status") == "ok" and e.get("median_s")}
        reduced = {n: e for n, e in r["engines"].items() if n in ENGINES}
        if not fp32 or not reduced:
            continue
        best = min(fp32, key=fp32.get)
        rows.append(dict(label=r["label"], cell=r["cell"], fastest_fp32=best,
                         vs={n: fp32[best] / e["median_s"] if e.get("status") == "ok" and e.get("median_s") else None
                             for n, e in reduced.items()}))
    return rows


def print_ratios(results: list[dict], out) -> None:
    rows = ratios(results)
    if not rows:
        return
    names = list(dict.fromkeys(n for r in rows for n in r["vs"]))
    print("", file=out)
    print("reduced precision: speed-up over the faster float32 engine (ratio of medians; > 1 is faster)", file=out)
    print("config".ljust(37) + "cell".ljust(6) + "fastest fp32".ljust(14) + "".join(n.ljust(18) for n in names),
          file=out)
    for r in rows:
        vals = "".join(_ratio(r["vs"].get(n)).ljust(18) for n in names)
        print(r["label"].ljust(37) + r["cell"].ljust(6) + r["fastest_fp32"].ljust(14) + vals, file=out)


def markdown_lines(results: list[dict]) -> list[str]:
    rows = ratios(results)
    if not rows:
        return []
    names = list(dict.fromkeys(n for r in rows for n in r["vs"]))
    head = ["config", "cell", "fastest fp32"] + names
    lines = ["## Reduced precision vs the faster float32 engine", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join([r["label"], r["cell"], r["fastest_fp32"]] + [_ratio(r["vs"].get(n)) for n in names])
              + " |" for r in rows]
    return lines + [""]


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"
