"""Streaming speech recognition with CTC: spoken digit strings -> digits, decoded while the audio arrives.

Data: made on this machine by the espeak-ng synthesizer (Debian/Ubuntu: ``apt-get install espeak-ng``;
macOS: ``brew install espeak-ng``), digit strings ("three one four") spoken by several voices at
random speeds and pitches. One voice is held out: its utterances are the test set, in two halves:
strings that occur in the training set (spoken by other voices) and strings that never do.

Features: 40 log-mel energies per 10 ms (25 ms Hann window), computed in numpy by a streaming
extractor, normalised with the training set's mean and deviation, three frames stacked per model
step (30 ms). Model: a unidirectional 2-layer LSTM (or GRU, ``--cell gru``) and a linear layer over
11 classes (blank and the ten digits), trained with ``rnnfast.losses.ctc_loss``. Test: each held-out utterance goes through
the feature extractor, ``model.stream()`` and an incremental CTC decoder 10 ms of audio at a time,
as a live recognizer would; the time per audio frame and the real-time factor (processing time /
audio duration) are measured on that loop.

Baseline: 1-nearest-neighbour dynamic time warping over the same features against every training
utterance (the transcript of the closest one), which can only answer with strings it has heard.

    python examples/recognize_speech.py           # a few minutes on 2 cores
    python examples/recognize_speech.py --quick   # a smoke run (seconds; the numbers mean little)
"""
from __future__ import annotations

import os

# rnnfast's kernels do the threading; numpy's small products run faster without BLAS threads of their own
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import io
import shutil
import subprocess
import time
import wave

import numpy as np

import rnnfast
from rnnfast.ctc import GreedyDecoder, PrefixBeamDecoder
from rnnfast.losses import ctc_loss
from rnnfast.metrics import edit_distance, token_error_rate
from rnnfast.nn import GRU, LSTM, Linear
from rnnfast.optim import Adam, clip_grad_norm

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-us+f2", "en-gb+m3",
                "en-us+m4", "en-gb-x-gbcwmd+f4"]
TEST_VOICE = "en-gb-x-rp+f3"
SAMPLE_RATE = 16000
HOP = 160            # 10 ms
WINDOW = 400         # 25 ms
N_FFT = 512
N_MELS = 40
STACK = 3            # feature frames per model step


# audio ----------------------------------------------------------------------------------------------
def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SystemExit("this example needs the espeak-ng synthesizer: apt-get install espeak-ng "
                         "(Debian/Ubuntu), brew install espeak-ng (macOS)")
    return path


def synthesize(words: str, voice: str, speed: int, pitch: int, espeak: str) -> np.ndarray:
    """espeak-ng's audio of ``words`` as float32 samples at SAMPLE_RATE."""
    wav = subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", words],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    audio = np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0
    # resample by linear interpolation (espeak-ng speaks at 22050 Hz)
    n = int(len(audio) * SAMPLE_RATE / rate)
    return np.interp(np.arange(n) * (rate / SAMPLE_RATE), np.arange(len(audio)), audio).astype(np.float32)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE, fmin=60.0, fmax=7600.0):
    """Triangular filters (n_mels, n_fft // 2 + 1), equally spaced on the mel scale."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    edges = 700.0 * (10 ** (np.linspace(mel(fmin), mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid))).astype(np.float32)


class LogMelStream:
    """Log-mel frames from audio fed in pieces of any size: frame k covers samples
    [k * HOP, k * HOP + WINDOW). ``feed`` returns the frames completed by the new samples (N, N_MELS)."""

    def __init__(self):
        self._window = np.hanning(WINDOW).astype(np.float32)
        self._mel = mel_filterbank()
        self._buffer = np.zeros(0, np.float32)

    def feed(self, samples) -> np.ndarray:
        buf = np.concatenate([self._buffer, np.asarray(samples, np.float32)])
        n = 0 if len(buf) < WINDOW else 1 + (len(buf) - WINDOW) // HOP
        if n == 0:
            self._buffer = buf
            return np.zeros((0, N_MELS), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(buf, WINDOW)[::HOP][:n] * self._window
        self._buffer = buf[n * HOP:]
        power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2
        return np.log(power @ self._mel.T + 1e-6).astype(np.float32)


def log_mel(audio) -> np.ndarray:
    """All the log-mel frames of one utterance (T, N_MELS)."""
    return LogMelStream().feed(audio)


def stack_frames(feats: np.ndarray, k: int = STACK) -> np.ndarray:
    """Consecutive groups of k frames concatenated (T // k, k * F): the model's 30 ms steps."""
    n = len(feats) // k
    return feats[:n * k].reshape(n, k * feats.shape[1])


# baseline -------------------------------------------------------------------------------------------
def dtw_distances(query: np.ndarray, templates: list) -> np.ndarray:
    """Length-normalised DTW distance from ``query`` (n, F) to each template (m_i, F), Euclidean frame
    cost, steps (1,0), (0,1), (1,1); vectorised over the templates (padded to the longest)."""
    lengths = np.array([len(t) for t in templates])
    m = int(lengths.max())
    padded = np.zeros((len(templates), m, query.shape[1]), np.float32)
    for i, t in enumerate(templates):
        padded[i, :len(t)] = t
    cost = np.sqrt(np.maximum(0.0, (query ** 2).sum(1)[None, :, None] + (padded ** 2).sum(2)[:, None, :]
                              - 2.0 * np.einsum("nf,kmf->knm", query, padded)))      # (K, n, m)
    acc = np.full((len(templates), m + 1), np.inf)
    acc[:, 0] = 0.0
    for i in range(query.shape[0]):
        row = np.full_like(acc, np.inf)
        diag_up = np.minimum(acc[:, :-1], acc[:, 1:]) + cost[:, i]        # from (i-1, j-1) or (i-1, j)
        for j in range(1, m + 1):   # the (i, j-1) step is sequential along the row
            row[:, j] = np.minimum(diag_up[:, j - 1], row[:, j - 1] + cost[:, i, j - 1])
        acc = row
        acc[:, 0] = np.inf
    return acc[np.arange(len(templates)), lengths] / (query.shape[0] + lengths)


# model ----------------------------------------------------------------------------------------------
class Recognizer:
    """LSTM or GRU -> Linear over blank + 10 digits; ``stream()`` decodes live audio."""

    def __init__(self, cell: str, hidden: int, layers: int, seed: int):
        self.rnn = {"lstm": LSTM, "gru": GRU}[cell](STACK * N_MELS, hidden, num_layers=layers, seed=seed)
        self.head = Linear(hidden, len(DIGITS) + 1, seed=seed + 1)
        self.mean = self.std = None

    def parameters(self):
        return self.rnn.parameters() + self.head.parameters()

    def logits(self, x, lengths=None):
        h, _ = self.rnn(x, lengths=lengths)
        return self.head(h)

    def backward(self, grad):
        self.rnn.backward(self.head.backward(grad))

    def eval(self):
        self.rnn.eval()
        self.head.eval()


def recognize_live(model: Recognizer, audio: np.ndarray, beam_width: int, chunk: int = HOP):
    """Feed ``audio`` ``chunk`` samples at a time through features, model.stream() and the decoders,
    as a live recognizer would. Returns the beam and greedy hypotheses, the seconds spent, the feature
    frames made, and the partial results: (seconds of audio heard, beam hypothesis) at each change."""
    feats, stream = LogMelStream(), model.rnn.stream()
    beam, greedy = PrefixBeamDecoder(beam_width, blank=0), GreedyDecoder(blank=0)
    pending = np.zeros((0, N_MELS), np.float32)
    frames, partial = 0, []
    t0 = time.perf_counter()
    for start in range(0, len(audio), chunk):
        new = feats.feed(audio[start:start + chunk])
        frames += len(new)
        pending = np.concatenate([pending, (new - model.mean) / model.std])
        while len(pending) >= STACK:
            x = pending[:STACK].reshape(-1)
            pending = pending[STACK:]
            scores = model.head(stream.step(x))
            hyp = beam.feed(scores)
            greedy.feed(scores)
            if not partial or hyp != partial[-1][1]:
                partial.append((min(start + chunk, len(audio)) / SAMPLE_RATE, hyp))   # audio fed so far
    spent = time.perf_counter() - t0
    digits = lambda labels: [c - 1 for c in labels]   # noqa: E731  (class c is digit c - 1)
    return digits(beam.best()), digits(greedy.best()), spent, frames, [(t, digits(h)) for t, h in partial]


def spelled(digits) -> str:
    return " ".join(DIGITS[d] for d in digits)


def char_error_rate(pred, ref) -> float:
    return sum(edit_distance(spelled(p), spelled(r)) for p, r in zip(pred, ref)) / sum(len(spelled(r)) for r in ref)


def make_corpus(rng, n_train: int, n_test: int, espeak: str):
    """Training utterances (voice, audio, digits) from TRAIN_VOICES, and the held-out voice's test set:
    half of its strings occur in training ('seen'), half never do ('unseen')."""
    def random_string():
        return tuple(int(d) for d in rng.integers(0, 10, int(rng.integers(2, 6))))

    pool = sorted({random_string() for _ in range(max(4, n_train // 4))})
    train_strings = [pool[i % len(pool)] if i < 2 * len(pool) else random_string() for i in range(n_train)]
    seen = [pool[i] for i in rng.choice(len(pool), n_test // 2, replace=False)]
    unseen = []
    heard = set(train_strings)
    while len(unseen) < n_test - len(seen):
        s = random_string()
        if s not in heard:
            unseen.append(s)
            heard.add(s)

    def say(digits, voice):
        return synthesize(spelled(digits), voice, int(rng.integers(130, 211)), int(rng.integers(25, 76)), espeak)

    train = [(v, say(s, v), s) for s, v in zip(train_strings, rng.choice(TRAIN_VOICES, n_train))]
    test = [(TEST_VOICE, say(s, TEST_VOICE), s) for s in seen + unseen]
    return train, test, len(seen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=600, help="training utterances")
    ap.add_argument("--test", type=int, default=60, help="held-out voice utterances (half seen strings)")
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny data and model, few steps")
    a = ap.parse_args()
    if a.quick:
        a.train, a.test, a.hidden, a.layers, a.steps, a.batch = 24, 4, 32, 1, 20, 8
    rnnfast.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    espeak = espeak_path()

    t0 = time.perf_counter()
    train, test, n_seen = make_corpus(rng, a.train, a.test, espeak)
    train_feats = [log_mel(audio) for _, audio, _ in train]
    frames_all = np.concatenate(train_feats)
    mean, std = frames_all.mean(0), frames_all.std(0) + 1e-5
    xs = [stack_frames((f - mean) / std) for f in train_feats]
    seconds_audio = sum(len(audio) for _, audio, _ in train) / SAMPLE_RATE
    print(f"synthesized {len(train)} training utterances ({seconds_audio:.0f} s of audio, {len(TRAIN_VOICES)} "
          f"voices) and {len(test)} of the held-out voice {TEST_VOICE} in {time.perf_counter() - t0:.0f} s")

    model = Recognizer(a.cell, a.hidden, a.layers, a.seed)
    model.mean, model.std = mean, std
    opt = Adam(model.parameters(), lr=2e-3)
    t0, ctc_seconds, log_every = time.perf_counter(), 0.0, max(1, a.steps // 10)
    running = []
    for step in range(1, a.steps + 1):
        idx = rng.choice(len(xs), a.batch, replace=False)
        lengths = np.array([len(xs[i]) for i in idx])
        x = np.zeros((lengths.max(), a.batch, STACK * N_MELS), np.float32)
        for b, i in enumerate(idx):
            x[:lengths[b], b] = xs[i]
        targets = [train[i][2] for i in idx]
        target_lengths = np.array([len(t) for t in targets])
        padded = np.zeros((a.batch, target_lengths.max()), np.int64)
        for b, t in enumerate(targets):
            padded[b, :len(t)] = np.array(t) + 1          # class 0 is the blank
        logits = model.logits(x, lengths)
        c0 = time.perf_counter()
        loss, grad = ctc_loss(logits, padded, lengths, target_lengths, zero_infinity=True)
        ctc_seconds += time.perf_counter() - c0
        opt.zero_grad()
        model.backward(grad)
        clip_grad_norm(model.parameters(), 5.0)
        opt.step()
        running.append(loss)
        if step % log_every == 0:
            print(f"step {step}/{a.steps}: CTC loss {np.mean(running):.3f}")
            running = []
    train_seconds = time.perf_counter() - t0
    print(f"trained in {train_seconds:.0f} s ({1e3 * train_seconds / a.steps:.0f} ms per step, of which ctc_loss "
          f"{1e3 * ctc_seconds / a.steps:.1f} ms = {100 * ctc_seconds / train_seconds:.0f}%)")

    model.eval()
    refs = [list(digits) for _, _, digits in test]
    beam_hyps, greedy_hyps, spent, frames, audio_seconds, partials = [], [], 0.0, 0, 0.0, []
    for _, audio, _ in test:
        b, g, seconds, n, partial = recognize_live(model, audio, a.beam)
        partials.append(partial)
        beam_hyps.append(b)
        greedy_hyps.append(g)
        spent, frames, audio_seconds = spent + seconds, frames + n, audio_seconds + len(audio) / SAMPLE_RATE

    t0 = time.perf_counter()
    templates = [(f - mean) / std for f in train_feats]
    dtw_hyps = []
    for _, audio, _ in test:
        d = dtw_distances((log_mel(audio) - mean) / std, templates)
        dtw_hyps.append(list(train[int(np.argmin(d))][2]))
    dtw_seconds = time.perf_counter() - t0

    def row(name, hyps):
        parts = []
        for label, sl in (("seen", slice(0, n_seen)), ("unseen", slice(n_seen, None)), ("all", slice(None))):
            if len(refs[sl]):
                parts.append(f"{label} WER {100 * token_error_rate(hyps[sl], refs[sl]):5.1f}%")
        print(f"  {name:<34} " + "  ".join(parts) + f"  CER {100 * char_error_rate(hyps, refs):5.1f}%")

    print(f"\nheld-out voice {TEST_VOICE}: {len(test)} utterances, {n_seen} with strings heard in training "
          f"(other voices), {len(test) - n_seen} never heard; word = digit")
    row(f"CTC {a.cell.upper()}, prefix beam {a.beam}, streamed", beam_hyps)
    row(f"CTC {a.cell.upper()}, greedy, streamed", greedy_hyps)
    row("1-NN DTW (same features)", dtw_hyps)
    print(f"streaming: {1e6 * spent / frames:.0f} us per 10 ms audio frame (features + model step + both decoders), "
          f"real-time factor {spent / audio_seconds:.3f}; DTW took {dtw_seconds:.1f} s for the test set")
    for (_, audio, ref), hyp, partial in list(zip(test, beam_hyps, partials))[:3]:
        print(f"  said {spelled(ref)!r:40} heard {spelled(hyp)!r}")
        print("    as it arrived: " + " | ".join(f"{t:.2f} s {spelled(h)!r}" for t, h in partial if h) +
              f"  (audio {len(audio) / SAMPLE_RATE:.2f} s)")


if __name__ == "__main__":
    main()
