"""Many-to-many, unaligned: an encoder-decoder (sequence to sequence) model.

Encoder: Embedding -> RNN/LSTM/GRU (optionally bidirectional), whole sequence, one kernel call per
layer and direction. Its final state is the decoder's initial state (the "context"; a
bidirectional encoder's two directions are joined per layer by a Linear + tanh bridge).
Decoder: Embedding -> unidirectional RNN/LSTM/GRU -> [attention over the encoder outputs] ->
Dropout -> Linear over the target vocabulary.

Attention (optional) follows Luong et al. (2015)'s global attention: the query is the decoder's
current output h_t, the score is additive (Bahdanau) or multiplicative (Luong "general"),
masked for source padding, and the attentional vector tanh(W_c [context; h_t]) feeds the output
layer. Because the decoder's recurrent input is only the previous token, teacher-forced training
runs the decoder as ONE whole-sequence kernel call.

Teacher forcing ratio r < 1 (scheduled sampling): at each step each sequence is fed the
reference token with probability r, else the model's own greedy prediction from the previous
step. The decoder then runs step by step in training, through cells that share the decoder
layer's parameters (their backward calls run newest-first, as back-propagation through time).

Decoding (greedy and beam search with length normalisation) uses the decoder's streaming step
path, starts from ``<bos>`` and stops at ``<eos>``; ``<pad>`` and ``<bos>`` are never produced.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..losses import cross_entropy
from ..nn import Dropout, Embedding, Linear, Module, no_grad
from ..nn.module import DropoutRng
from ..text import pad_sequences
from ._common import (CELLS, Saveable, check_choice, check_int, check_lengths, check_max_len, check_prob, eval_mode,
                      length_mask, make_rnn, seeds, shared_cells, shift_for_teacher_forcing,
                      special_ids)
from .attention import KINDS, Attention

__all__ = ["Seq2Seq"]


def _log_softmax(z):
    z = z.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Seq2Seq(Saveable, DropoutRng, Module):
    """Encoder-decoder over token ids; see the module docstring.

    ``attention``: None, 'additive' or 'multiplicative'. ``teacher_forcing``: the probability of
    feeding the reference token in training (1.0 = always, the fast path). ``bos_id``/``eos_id``
    (or an attached target vocabulary, :meth:`set_vocabs`) are needed to build batches and to
    decode. ``max_src_len``/``max_tgt_len`` (optional) bound the accepted lengths; decoding stops
    after ``max_tgt_len`` tokens (default: 2 * source length + 10).
    """

    _vocab_attrs = ("src_vocab", "tgt_vocab")

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, hidden_size: int, *,
                 embedding_dim: int | None = None, num_layers: int = 1, cell: str = "lstm",
                 bidirectional_encoder: bool = False, attention: str | None = None,
                 attention_size: int | None = None, dropout: float = 0.0, teacher_forcing: float = 1.0,
                 bos_id: int | None = None, eos_id: int | None = None, pad_id: int = 0,
                 max_src_len: int | None = None, max_tgt_len: int | None = None, seed=None):
        super().__init__()
        w = "Seq2Seq"
        Vs = check_int(src_vocab_size, "src_vocab_size", 1, w)
        Vt = check_int(tgt_vocab_size, "tgt_vocab_size", 1, w)
        H = check_int(hidden_size, "hidden_size", 1, w)
        E = check_int(embedding_dim if embedding_dim is not None else H, "embedding_dim", 1, w)
        if attention is not None:
            check_choice(attention, "attention", KINDS, w)
        for name, v in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if v is not None and not 0 <= check_int(v, name, 0, w) < Vt:
                raise ValueError(f"{w}: {name}: expected an id < tgt_vocab_size={Vt}, got {v}")
        pad_id = check_int(pad_id, "pad_id", 0, w)
        if pad_id >= Vs:
            raise ValueError(f"{w}: pad_id: expected an id < src_vocab_size={Vs}, got {pad_id}")
        self._config = dict(src_vocab_size=Vs, tgt_vocab_size=Vt, hidden_size=H, embedding_dim=E,
                            num_layers=check_int(num_layers, "num_layers", 1, w),
                            cell=check_choice(cell, "cell", CELLS, w),
                            bidirectional_encoder=bool(bidirectional_encoder),
                            attention=attention,
                            attention_size=check_int(attention_size, "attention_size", 1, w, allow_none=True),
                            dropout=check_prob(dropout, "dropout", w), teacher_forcing=1.0, bos_id=bos_id,
                            eos_id=eos_id, pad_id=pad_id,
                            max_src_len=check_int(max_src_len, "max_src_len", 1, w, allow_none=True),
                            max_tgt_len=check_int(max_tgt_len, "max_tgt_len", 1, w, allow_none=True))
        self.teacher_forcing = teacher_forcing
        c = self._config
        L, p = c["num_layers"], c["dropout"]
        D = 2 if c["bidirectional_encoder"] else 1
        s = seeds(seed, 13)
        self.src_embed = Embedding(Vs, E, padding_idx=pad_id, seed=s[0])
        self.drop_src = Dropout(p, seed=s[1])
        self.encoder = make_rnn(c["cell"], E, H, L, p, c["bidirectional_encoder"], s[2])
        if D == 2:  # join the two directions' final states, layer by layer
            self.bridge_h = Linear(2 * H, H, seed=s[3])
            self.bridge_c = Linear(2 * H, H, seed=s[4]) if c["cell"] == "lstm" else None
        self.tgt_embed = Embedding(Vt, E, padding_idx=pad_id, seed=s[5])
        self.drop_tgt = Dropout(p, seed=s[6])
        self.decoder = make_rnn(c["cell"], E, H, L, p, False, s[7])
        if attention is not None:
            self.attention = Attention(H, D * H, attention, attention_size, seed=s[8])
            self.combine = Linear(D * H + H, H, seed=s[9])
        else:
            self.attention = None
        self.drop_out = Dropout(p, seed=s[10])
        self.out = Linear(H, Vt, seed=s[11])
        object.__setattr__(self, "_cells", shared_cells(self.decoder))  # not submodules: no duplicate names
        self._dropout_rng = np.random.default_rng(s[12])  # scheduled sampling coins, step-mode dropout masks
        self.src_vocab = None
        self.tgt_vocab = None
        self.last_decoder_inputs = None

    # configuration -----------------------------------------------------------------------
    @property
    def config(self) -> dict:
        c = dict(self._config)
        c["teacher_forcing"] = self.teacher_forcing
        return c

    @property
    def teacher_forcing(self) -> float:
        return self._teacher_forcing

    @teacher_forcing.setter
    def teacher_forcing(self, value) -> None:
        object.__setattr__(self, "_teacher_forcing", check_prob(value, "teacher_forcing", "Seq2Seq", hi_open=False))

    def set_vocabs(self, src_vocab, tgt_vocab) -> None:
        """Attach the vocabularies (``rnnfast.text.Vocab``): they give <bos>/<eos> and let
        :meth:`translate` take and return tokens. Saved and loaded with the model."""
        c = self._config
        for name, v, size in (("src_vocab", src_vocab, c["src_vocab_size"]), ("tgt_vocab", tgt_vocab,
                                                                              c["tgt_vocab_size"])):
            if len(v) != size:
                raise ValueError(f"Seq2Seq.set_vocabs: {name}: has {len(v)} tokens, the model expects {size}")
        if tgt_vocab.bos_id is None or tgt_vocab.eos_id is None:
            raise ValueError("Seq2Seq.set_vocabs: tgt_vocab: needs <bos> and <eos> special tokens")
        if tgt_vocab.pad_id not in (None, c["pad_id"]) or src_vocab.pad_id not in (None, c["pad_id"]):
            raise ValueError(f"Seq2Seq.set_vocabs: the vocabularies' <pad> id must be the model's pad_id={c['pad_id']}")
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        c["bos_id"], c["eos_id"] = int(tgt_vocab.bos_id), int(tgt_vocab.eos_id)

    def _attach_vocab(self, attr, vocab):
        setattr(self, attr, vocab)

    def _specials(self, where):
        return special_ids(self._config, where, "train a vocabulary and attach it with set_vocabs(src, tgt)")

    # batches -------------------------------------------------------------------------------
    def make_batch(self, src_seqs, tgt_seqs) -> dict:
        """Pad id sequences into arrays: ``src``, ``src_lengths``, ``tgt_in`` (<bos> y),
        ``tgt_out`` (y <eos>) and ``tgt_lengths``."""
        bos, eos = self._specials("Seq2Seq.make_batch")
        pad = self._config["pad_id"]
        if len(src_seqs) != len(tgt_seqs):
            raise ValueError(f"Seq2Seq.make_batch: {len(src_seqs)} sources but {len(tgt_seqs)} targets")
        for i, s in enumerate(src_seqs):
            if len(s) == 0:
                raise ValueError(f"Seq2Seq.make_batch: source {i} is an empty sequence")
        src, src_len = pad_sequences(src_seqs, pad_id=pad)
        tgt_in, tgt_out, tgt_len = shift_for_teacher_forcing(tgt_seqs, bos, eos, pad, "Seq2Seq.make_batch")
        return {"src": src, "src_lengths": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_lengths": tgt_len}

    # encoder ------------------------------------------------------------------------------
    def _check_ids(self, ids, name, vocab_size, max_len, lengths, where):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise ValueError(f"{where}: {name}: expected integer ids of shape (B, T), got {ids.dtype} {ids.shape}")
        if ids.shape[0] == 0:
            raise ValueError(f"{where}: {name}: empty batch")
        lens = check_lengths(lengths, ids.shape[0], ids.shape[1], f"{where}: {name}")
        check_max_len(ids.shape[1], lens, max_len, where, name)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"{where}: {name}: id {bad} is outside the vocabulary [0, {vocab_size})")
        return ids, lens

    def _encode(self, src, src_lengths, where):
        """(memory, initial decoder state, lengths, context for _encoder_backward)."""
        c = self._config
        src, lens = self._check_ids(src, "src", c["src_vocab_size"], c["max_src_len"], src_lengths, where)
        x, c_emb = self.src_embed.forward_ctx(src)
        x, c_drop = self.drop_src.forward_ctx(x)
        (enc_out, state), c_enc = self.encoder.forward_ctx(x, None, lens)
        lstm = c["cell"] == "lstm"
        h, cc = state if lstm else (state, None)
        bridge = None
        if self.encoder.bidirectional:
            L, B, H = c["num_layers"], h.shape[1], c["hidden_size"]

            def join(x):  # (L*2, B, H) -> (L, B, 2H): forward then backward per layer
                return x.reshape(L, 2, B, H).transpose(0, 2, 1, 3).reshape(L, B, 2 * H)
            a, c_bh = self.bridge_h.forward_ctx(join(h))
            h = np.tanh(a)
            c_bc = None
            if lstm:
                a, c_bc = self.bridge_c.forward_ctx(join(cc))
                cc = np.tanh(a)
            bridge = (h, cc, c_bh, c_bc)
        memory = self.attention.encode(enc_out, lens) if self.attention is not None else None
        return memory, ((h, cc) if lstm else h), lens, (c_emb, c_drop, c_enc, bridge, src.shape[1])

    def _encoder_backward(self, memory, grad_init, enc_ctx):
        c_emb, c_drop, c_enc, bridge, T = enc_ctx
        lstm = self._config["cell"] == "lstm"
        gh, gc = grad_init if lstm else (grad_init, None)
        if bridge is not None:
            L, B, H = gh.shape
            h, cc, c_bh, c_bc = bridge

            def split(g):  # inverse of join
                return np.ascontiguousarray(g.reshape(L, B, 2, H).transpose(0, 2, 1, 3).reshape(2 * L, B, H))
            gh = split(self.bridge_h.backward_ctx(c_bh, gh * (1.0 - h * h)))
            gc = split(self.bridge_c.backward_ctx(c_bc, gc * (1.0 - cc * cc))) if lstm else None
        B = gh.shape[1]
        g_out = self.attention.backward_memory(memory) if memory is not None else \
            np.zeros((B, T, self.encoder.num_directions * self.encoder.hidden_size), np.float32)
        g = self.encoder.backward_ctx(c_enc, g_out.astype(np.float32), (gh, gc) if lstm else gh)
        self.src_embed.backward_ctx(c_emb, self.drop_src.backward_ctx(c_drop, g))

    # decoder output layer -------------------------------------------------------------------
    def _head(self, dec_out, memory):
        """Decoder outputs (B, T, H) -> (logits (B, T, V), context for _head_backward)."""
        c_attn = c_comb = comb = None
        if self.attention is not None:
            (ctx, _), c_attn = self.attention.forward_ctx(dec_out, memory)
            a, c_comb = self.combine.forward_ctx(np.concatenate([ctx, dec_out], axis=2))
            comb = np.tanh(a)
            x = comb
        else:
            x = dec_out
        x, c_drop = self.drop_out.forward_ctx(x)
        logits, c_out = self.out.forward_ctx(x)
        return logits, (c_attn, comb, c_comb, c_drop, c_out)

    def _head_backward(self, grad_logits, head_ctx):
        c_attn, comb, c_comb, c_drop, c_out = head_ctx
        g = self.drop_out.backward_ctx(c_drop, self.out.backward_ctx(c_out, grad_logits))
        if self.attention is None:
            return g
        g = self.combine.backward_ctx(c_comb, g * (1.0 - comb * comb))
        K = self.attention.key_size
        return g[:, :, K:] + self.attention.backward_ctx(c_attn, g[:, :, :K])

    def _step_logits(self, h, memory):
        """Logits (B, V) of one decoding step from the top decoder output h (B, H), with no caches;
        <pad> and <bos> masked out (never produced)."""
        with no_grad():
            if self.attention is not None:
                ctx, _ = self.attention(h[:, None, :], memory)
                h = np.tanh(self.combine(np.concatenate([ctx[:, 0], h], axis=1)))
            z = self.out(h)
        c = self._config
        z[:, c["pad_id"]] = -np.inf
        if c["bos_id"] is not None:
            z[:, c["bos_id"]] = -np.inf
        return z

    # forward / backward ---------------------------------------------------------------------
    def forward(self, src, tgt_in, src_lengths=None, tgt_lengths=None):
        """Teacher-forced logits (B, T_tgt, V) for decoder inputs ``tgt_in`` (<bos> y ...)."""
        return super().forward(src, tgt_in, src_lengths, tgt_lengths)

    def _forward(self, src, tgt_in, src_lengths=None, tgt_lengths=None):
        where = "Seq2Seq.forward"
        c = self._config
        tgt_in, tgt_lens = self._check_ids(tgt_in, "tgt_in", c["tgt_vocab_size"], c["max_tgt_len"], tgt_lengths,
                                           where)
        if np.asarray(src).shape[:1] != tgt_in.shape[:1]:
            raise ValueError(f"{where}: src and tgt_in: expected the same batch size, got {np.shape(src)[0]} and "
                             f"{tgt_in.shape[0]}")
        memory, init, _, enc_ctx = self._encode(src, src_lengths, where)
        if self.training and self.teacher_forcing < 1.0:  # scheduled sampling, with or without no_grad
            dec_out, dec_ctx = self._decode_steps(tgt_in, init, memory)
        else:
            x, c_emb = self.tgt_embed.forward_ctx(tgt_in)
            x, c_drop = self.drop_tgt.forward_ctx(x)
            (dec_out, _), c_dec = self.decoder.forward_ctx(x, init, tgt_lens)
            dec_ctx = ("sequence", c_emb, c_drop, c_dec)
            self.last_decoder_inputs = tgt_in
        logits, head_ctx = self._head(dec_out, memory)
        return logits, ((memory, enc_ctx, dec_ctx, head_ctx) if self.saving() else None)

    def _decode_steps(self, tgt_in, init, memory):
        """Scheduled sampling: the decoder step by step through the shared cells."""
        c = self._config
        B, T = tgt_in.shape
        L, H = c["num_layers"], c["hidden_size"]
        lstm = c["cell"] == "lstm"
        cells = self._cells
        for cell in cells:
            cell.train(True)
        p = self.decoder.dropout
        layer_masks = None
        if p > 0 and L > 1:  # the decoder layer's between-layer dropout, one mask per step and layer
            keep = self._dropout_rng.random((T, L - 1, B, H)) >= p
            layer_masks = keep.astype(np.float32) / np.float32(1.0 - p)
        teacher = self._dropout_rng.random((B, T)) < self.teacher_forcing
        used = tgt_in.copy()
        states = [None if init is None else ((init[0][k], init[1][k]) if lstm else init[k]) for k in range(L)]
        dec_out = np.empty((B, T, H), np.float32)
        steps = []  # per step: (embedding ctx, dropout ctx, one ctx per layer)
        for t in range(T):
            x, c_emb = self.tgt_embed.forward_ctx(used[:, t])
            x, c_drop = self.drop_tgt.forward_ctx(x)
            c_cells = []
            for k in range(L):
                if k > 0 and layer_masks is not None:
                    x = x * layer_masks[t, k - 1]
                states[k], c_k = cells[k].forward_ctx(x, states[k])
                c_cells.append(c_k)
                x = states[k][0] if lstm else states[k]
            steps.append((c_emb, c_drop, c_cells))
            dec_out[:, t] = x
            if t + 1 < T:
                pred = self._step_logits(x, memory).argmax(axis=1)
                used[:, t + 1] = np.where(teacher[:, t + 1], tgt_in[:, t + 1], pred)
        self.last_decoder_inputs = used
        return dec_out, ("steps", steps, layer_masks)

    def backward(self, grad_logits):
        """Accumulates every parameter's gradient (returns None: the inputs are ids)."""
        return super().backward(grad_logits)

    def _backward(self, ctx, grad_logits):
        memory, enc_ctx, dec_ctx, head_ctx = ctx.saved
        g_dec = self._head_backward(np.asarray(grad_logits, np.float32), head_ctx)
        if dec_ctx[0] == "steps":
            grad_init = self._steps_backward(g_dec, dec_ctx[1], dec_ctx[2])
        else:
            _, c_emb, c_drop, c_dec = dec_ctx
            g_emb = self.decoder.backward_ctx(c_dec, g_dec)
            grad_init = c_dec.grad_hx
            self.tgt_embed.backward_ctx(c_emb, self.drop_tgt.backward_ctx(c_drop, g_emb))
        self._encoder_backward(memory, grad_init, enc_ctx)
        return None

    def _steps_backward(self, g_dec, steps, layer_masks):
        """Back through the decoder steps, newest first; returns the initial state's gradient."""
        L = self._config["num_layers"]
        lstm = self._config["cell"] == "lstm"
        B, T, H = g_dec.shape
        dh = [np.zeros((B, H), np.float32) for _ in range(L)]
        dc = [np.zeros((B, H), np.float32) for _ in range(L)] if lstm else [None] * L
        for t in range(T - 1, -1, -1):
            c_emb, c_drop, c_cells = steps[t]
            g = g_dec[:, t]
            for k in range(L - 1, -1, -1):
                g = self._cells[k].backward_ctx(c_cells[k], dh[k] + g, dc[k])
                if lstm:
                    dh[k], dc[k] = c_cells[k].grad_hx
                else:
                    dh[k] = c_cells[k].grad_hx
                if k > 0 and layer_masks is not None:
                    g = g * layer_masks[t, k - 1]
            self.tgt_embed.backward_ctx(c_emb, self.drop_tgt.backward_ctx(c_drop, g))
        return (np.stack(dh), np.stack(dc)) if lstm else np.stack(dh)

    # loss ------------------------------------------------------------------------------
    def loss(self, logits, tgt_out, tgt_lengths=None):
        """``(loss, grad_logits)``: cross-entropy averaged over the valid target steps."""
        lg = np.asarray(logits)
        B, T = lg.shape[:2]
        lens = check_lengths(tgt_lengths, B, T, "Seq2Seq.loss")
        mask = length_mask(lens, T)
        t = np.asarray(tgt_out)
        if t.shape != (B, T) or t.dtype.kind not in "iu":
            raise ValueError(f"Seq2Seq.loss: tgt_out: expected integer ids of shape {(B, T)}, got {t.dtype} {t.shape}")
        V = self._config["tgt_vocab_size"]
        valid = t[mask]
        if valid.min() < 0 or valid.max() >= V:
            bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
            raise ValueError(f"Seq2Seq.loss: tgt_out: id {bad} is outside the target vocabulary [0, {V})")
        return cross_entropy(lg, np.where(mask, t, 0), mask=mask)

    def train_step(self, batch: dict):
        """Forward, loss, backward on a :meth:`make_batch` dict; returns ``(loss, target tokens)``."""
        logits = self.forward(batch["src"], batch["tgt_in"], batch["src_lengths"], batch["tgt_lengths"])
        loss, g = self.loss(logits, batch["tgt_out"], batch["tgt_lengths"])
        self.backward(g)
        return loss, int(np.sum(batch["tgt_lengths"]))

    # decoding -------------------------------------------------------------------------
    def _decode_setup(self, src, src_lengths, max_len, where):
        bos, eos = self._specials(where)
        memory, init, lens, _ = self._encode(src, src_lengths, where)
        if max_len is None:
            max_len = self._config["max_tgt_len"] or int(2 * lens.max() + 10)
        max_len = check_int(max_len, "max_len", 1, where)
        return bos, eos, memory, init, max_len

    def greedy_decode(self, src, src_lengths=None, max_len: int | None = None) -> list:
        """The most likely next token at every step, until <eos> (not included) or ``max_len``
        tokens. Returns one int64 array per source sequence."""
        where = "Seq2Seq.greedy_decode"
        with eval_mode(self):
            bos, eos, memory, init, max_len = self._decode_setup(src, src_lengths, max_len, where)
            B = (init[0] if isinstance(init, tuple) else init).shape[1]
            stream = self.decoder.stream(B)
            stream.state = init
            emb = self.tgt_embed.weight.data
            token = np.full(B, bos, np.int64)
            out = np.full((B, max_len), eos, np.int64)
            done = np.zeros(B, bool)
            for t in range(max_len):
                h = stream.step(emb[token])
                token = self._step_logits(h, memory).argmax(axis=1)
                out[:, t] = np.where(done, eos, token)
                done |= token == eos
                if done.all():
                    break
        return [row[:np.argmax(row == eos)] if (row == eos).any() else row.copy() for row in out]

    def beam_search(self, src, src_lengths=None, beam_size: int = 4, max_len: int | None = None,
                    length_penalty: float = 1.0, return_scores: bool = False):
        """Beam search: keeps the ``beam_size`` best partial translations per source; a hypothesis
        ends at <eos>. Finished hypotheses compete by log-probability / length**length_penalty
        (length counts the tokens including <eos>; 0 disables normalisation, 1 is the mean
        log-probability per token). Returns one int64 array per source (and the normalised scores)."""
        where = "Seq2Seq.beam_search"
        if isinstance(beam_size, bool) or not isinstance(beam_size, numbers.Integral) or beam_size < 1:
            raise ValueError(f"{where}: beam_size: expected an int >= 1, got {beam_size!r}")
        if isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real) \
                or not math.isfinite(length_penalty) or length_penalty < 0:
            raise ValueError(f"{where}: length_penalty: expected a finite number >= 0, got {length_penalty!r}")
        k = int(beam_size)
        with eval_mode(self):
            bos, eos, memory, init, max_len = self._decode_setup(src, src_lengths, max_len, where)
            lstm = isinstance(init, tuple)
            B = (init[0] if lstm else init).shape[1]
            V = self._config["tgt_vocab_size"]
            stream = self.decoder.stream(B * k)
            stream.state = tuple(np.repeat(s, k, axis=1) for s in init) if lstm else np.repeat(init, k, axis=1)
            mem = memory.repeat(k) if memory is not None else None
            emb = self.tgt_embed.weight.data
            scores = np.full((B, k), -np.inf)
            scores[:, 0] = 0.0  # one live hypothesis per source at the start
            tokens = np.full(B * k, bos, np.int64)
            hist = [[[] for _ in range(k)] for _ in range(B)]
            finished = [[] for _ in range(B)]
            active = np.ones(B, bool)

            def norm(s, n):
                return s / (n ** length_penalty)
            for t in range(max_len):
                h = stream.step(emb[tokens])
                logp = _log_softmax(self._step_logits(h, mem)).reshape(B, k, V)
                flat = (scores[:, :, None] + logp).reshape(B, k * V)
                m = min(2 * k, k * V)
                top = np.argpartition(-flat, m - 1, axis=1)[:, :m]
                new_scores = np.full((B, k), -np.inf)
                new_tok = np.full((B, k), eos, np.int64)
                origin = np.zeros((B, k), np.int64)
                new_hist = [[[] for _ in range(k)] for _ in range(B)]
                for b in np.flatnonzero(active):
                    order = top[b][np.argsort(-flat[b, top[b]], kind="stable")]
                    n = 0
                    for idx in order:
                        s = flat[b, idx]
                        if not np.isfinite(s):
                            break
                        j, v = divmod(int(idx), V)
                        if v == eos:
                            finished[b].append((norm(s, t + 1), hist[b][j]))
                        else:
                            new_scores[b, n], new_tok[b, n], origin[b, n] = s, v, j
                            new_hist[b][n] = hist[b][j] + [v]
                            n += 1
                        if n == k:
                            break
                    if len(finished[b]) >= k or n == 0:
                        active[b] = False
                if not active.any():
                    break
                rows = (np.arange(B)[:, None] * k + origin).reshape(-1)
                st = stream.state
                stream.state = tuple(s[:, rows] for s in st) if lstm else st[:, rows]
                scores, tokens, hist = new_scores, new_tok.reshape(-1), new_hist
            for b in range(B):  # hypotheses cut off by max_len compete too
                if active[b] or not finished[b]:
                    for j in range(k):
                        if np.isfinite(scores[b, j]):
                            finished[b].append((norm(scores[b, j], len(hist[b][j])), hist[b][j]))
        best = [max(f, key=lambda p: p[0]) for f in finished]
        seqs = [np.array(seq, np.int64) for _, seq in best]
        return (seqs, np.array([s for s, _ in best])) if return_scores else seqs

    def decode(self, src, src_lengths=None, beam_size: int = 1, max_len: int | None = None,
               length_penalty: float = 1.0) -> list:
        """Greedy decoding for ``beam_size == 1``, else beam search."""
        if isinstance(beam_size, bool) or not isinstance(beam_size, numbers.Integral) or beam_size < 1:
            raise ValueError(f"Seq2Seq.decode: beam_size: expected an int >= 1, got {beam_size!r}")
        if beam_size == 1:
            return self.greedy_decode(src, src_lengths, max_len)
        return self.beam_search(src, src_lengths, beam_size, max_len, length_penalty)

    def translate(self, token_seqs, beam_size: int = 1, max_len: int | None = None,
                  length_penalty: float = 1.0) -> list:
        """Token lists in, token lists out (needs the vocabularies, :meth:`set_vocabs`)."""
        if self.src_vocab is None or self.tgt_vocab is None:
            raise ValueError("Seq2Seq.translate: no vocabulary attached; build the vocabularies from the training "
                             "data and call set_vocabs(src_vocab, tgt_vocab) first")
        seqs = [self.src_vocab.encode(list(s)) for s in token_seqs]
        for i, s in enumerate(seqs):
            if len(s) == 0:
                raise ValueError(f"Seq2Seq.translate: token_seqs[{i}] is an empty sequence")
        src, lens = pad_sequences(seqs, pad_id=self._config["pad_id"])
        out = self.decode(src, lens, beam_size, max_len, length_penalty)
        return [self.tgt_vocab.decode(o) for o in out]

    def extra_repr(self) -> str:
        c = self._config
        return (f"cell={c['cell']!r}, hidden_size={c['hidden_size']}, num_layers={c['num_layers']}, "
                f"bidirectional_encoder={c['bidirectional_encoder']}, attention={c['attention']!r}, "
                f"teacher_forcing={self.teacher_forcing}")
