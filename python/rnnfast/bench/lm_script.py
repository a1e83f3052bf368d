"""A user's own LM training script, Embedding -> stacked LSTM -> Linear with Adam, in rnnfast or in torch.

`rnnfast bench --configs realistic` runs it as a child process, one per engine, in the default
environment: ``python lm_script.py ENGINE CONFIG_JSON``. It imports only numpy and its own engine
(never both engines in one process), so each process is what that engine's user would run.
Both engines start from the same numpy-drawn weights and train on the same batches: the losses of
the first steps are the correctness check (forward, backward and Adam together). Prints one JSON line.
"""
import json
import sys
import time

import numpy as np


def initial_weights(vocab: int, emb: int, hidden: int, layers: int, seed: int = 0) -> dict:
    """PyTorch's default init drawn with numpy, under the names both models below use."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden)
    w = {"embedding.weight": rng.standard_normal((vocab, emb))}
    for layer in range(layers):
        inp = emb if layer == 0 else hidden
        for name, shape in ((f"weight_ih_l{layer}", (4 * hidden, inp)), (f"weight_hh_l{layer}", (4 * hidden, hidden)),
                            (f"bias_ih_l{layer}", (4 * hidden,)), (f"bias_hh_l{layer}", (4 * hidden,))):
            w["rnn." + name] = rng.uniform(-k, k, shape)
    w["decoder.weight"] = rng.uniform(-k, k, (vocab, hidden))
    w["decoder.bias"] = rng.uniform(-k, k, (vocab,))
    return {n: a.astype(np.float32) for n, a in w.items()}


def batches(vocab: int, batch: int, seq: int, count: int, seed: int = 1) -> list:
    """(input ids, next-token targets), each (batch, seq) int64."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(0, vocab, (batch, seq + 1))
        out.append((ids[:, :-1].copy(), ids[:, 1:].copy()))
    return out


class RnnfastLM:
    def __init__(self, cfg: dict, weights: dict):
        import rnnfast
        from rnnfast.losses import cross_entropy
        from rnnfast.nn import LSTM, Embedding, Linear
        from rnnfast.optim import Adam

        rnnfast.set_num_threads(cfg["threads"])
        self.cross_entropy = cross_entropy
        self.embedding = Embedding(cfg["vocab"], cfg["emb"])
        self.rnn = LSTM(cfg["emb"], cfg["hidden"], cfg["layers"], batch_first=True)
        self.decoder = Linear(cfg["hidden"], cfg["vocab"])
        self.parts = {"embedding": self.embedding, "rnn": self.rnn, "decoder": self.decoder}
        for prefix, module in self.parts.items():
            module.load_state_dict({n[len(prefix) + 1:]: a for n, a in weights.items() if n.startswith(prefix + ".")})
        self.opt = Adam([p for m in self.parts.values() for p in m.parameters()], lr=cfg["lr"])

    def step(self, x, y) -> float:
        self.opt.zero_grad()
        h, _ = self.rnn(self.embedding(x))
        loss, grad = self.cross_entropy(self.decoder(h), y)
        self.embedding.backward(self.rnn.backward(self.decoder.backward(grad)))
        self.opt.step()
        return float(loss)


class TorchLM:
    def __init__(self, cfg: dict, weights: dict):
        import torch

        torch.set_num_threads(cfg["threads"])
        self.torch = torch
        self.embedding = torch.nn.Embedding(cfg["vocab"], cfg["emb"])
        self.rnn = torch.nn.LSTM(cfg["emb"], cfg["hidden"], cfg["layers"], batch_first=True)
        self.decoder = torch.nn.Linear(cfg["hidden"], cfg["vocab"])
        self.model = torch.nn.ModuleDict({"embedding": self.embedding, "rnn": self.rnn, "decoder": self.decoder})
        self.model.load_state_dict({n: torch.from_numpy(a) for n, a in weights.items()})
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])

    def step(self, x, y) -> float:
        torch = self.torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        h, _ = self.rnn(self.embedding(x))
        logits = self.decoder(h)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        self.opt.step()
        return float(loss.detach())


ENGINES = {"rnnfast": RnnfastLM, "torch": TorchLM}


def run(engine: str, cfg: dict) -> dict:
    """Check steps (losses from the shared start), warm-up steps, then ``cfg['steps']`` timed steps (the
    batches in turn)."""
    weights = initial_weights(cfg["vocab"], cfg["emb"], cfg["hidden"], cfg["layers"])
    data = batches(cfg["vocab"], cfg["batch"], cfg["seq"], 8)
    model = ENGINES[engine](cfg, weights)
    # the check: steps on one batch, whose loss falls fast, so any error in a gradient or an update shows
    losses = [model.step(*data[0]) for _ in range(cfg["check_steps"])]
    for k in range(cfg["warmup"]):
        model.step(*data[k % len(data)])
    times = []
    for k in range(cfg["steps"]):
        x, y = data[k % len(data)]
        t0 = time.perf_counter()
        model.step(x, y)
        times.append(time.perf_counter() - t0)
    return dict(engine=engine, check_losses=losses, step_s=times)


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]))))
