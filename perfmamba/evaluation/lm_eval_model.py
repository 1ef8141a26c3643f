"""The lm-eval model type `perfmamba`, and `perfmamba lm-eval …` (lm-eval's own CLI with it registered).

    perfmamba lm-eval run --model perfmamba --model_args pretrained=DIR,prune_ratio=0.5 --tasks corpus_choice
    lm_eval.simple_evaluate(model="perfmamba", model_args={"pretrained": DIR}, tasks=[...],
                            task_manager=perfmamba.evaluation.task_manager())

Scoring follows lm-eval 0.4.13's `hf` model (lm_eval/models/huggingface.py `HFLM`) step for step: the same
tokenization (`tok_encode`, `TemplateLM._encode_pair`), left truncation to `max_length + 1` tokens, right
padding, log-softmax over the whole output vocabulary, rolling windows for `loglikelihood_rolling`. On the
same weights exported with `model.save(dir, format="transformers")` it gives the numbers of `--model hf`
(tests/test_evaluation_lm_eval.py). Generation decodes greedily with the recurrent state cache (`model.step`).

model_args: pretrained (checkpoint directory in any supported format, or a preset name), tokenizer (path;
default: the files beside the checkpoint), prune_ratio, criterion, mode (`perfmamba.prune`, calibrated on
`calibration` text or else the corpus validation split), device, dtype, batch_size, max_length, backend.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Fill lm-eval's model registry before registering ours: once the registry is non-empty, lm-eval no longer
# imports its own models (`hf`, …) on demand (lm_eval/api/registry.py, get_model).
import lm_eval.models  # noqa: F401
import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from .. import pruning
from ..checkpoints import load
from ..data import CorpusError, model_tokenizer
from .local_tasks import TASKS_DIR
from .perplexity import EvaluationError

DEFAULT_MAX_LENGTH = 2048  # HFLM._DEFAULT_MAX_LENGTH: used when nothing else sets a context length
DTYPES = {"auto": None, "float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def task_manager(*, include_defaults: bool = True, include_path=None, metadata: dict | None = None):
    """An lm-eval TaskManager that also knows our offline tasks (perfmamba/evaluation/tasks);
    include_defaults=False skips indexing lm-eval's ~15k stock task files (5 s) when only ours are needed."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=_with_our_tasks(include_path), include_defaults=include_defaults,
                       metadata=metadata)


def _with_our_tasks(include_path) -> list[str]:
    paths = [] if include_path is None else list(include_path) if isinstance(include_path, (list, tuple)) \
        else str(include_path).split(os.pathsep)
    return [str(TASKS_DIR)] + [p for p in paths if p and Path(p).resolve() != TASKS_DIR]


def _parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise EvaluationError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[str(dtype)]


def _parse_batch_size(batch_size) -> int:
    if batch_size is None:
        return 1
    s = str(batch_size)
    if s.startswith("auto"):  # no memory probing here: a fixed size that suits small models
        return int(s.split(":")[1]) if ":" in s else 16
    try:
        n = int(s)
    except ValueError:
        n = 0
    if n < 1:
        raise EvaluationError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    return n


def _resolve_device(device) -> str:
    """As HFLM does: lm-eval's CLI passes device="cuda:0" by default, so a CUDA device falls back to the CPU
    where there is none."""
    if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def resolve_tokenizer(model, tokenizer=None):
    """`data.model_tokenizer`, required: evaluation cannot run without one."""
    try:
        return model_tokenizer(model, tokenizer, required=True)
    except CorpusError as e:
        raise EvaluationError(str(e)) from None


@register_model("perfmamba")
class PerfmambaLM(TemplateLM):
    """lm-eval model type for perfmamba models (any checkpoint format `perfmamba.load` reads)."""

    backend = "causal"

    def __init__(self, pretrained=None, tokenizer=None, *, model=None, prune_ratio=None,
                 criterion: str = "delta", mode: str = "removed", calibration=None,
                 calibration_tokens: int = 65536, device: str | None = None, dtype=None, batch_size=1,
                 max_batch_size=None, max_length=None, max_gen_toks: int = 256,
                 backend: str | None = None, add_bos_token=None, prefix_token_id=None, **kwargs):
        super().__init__()
        device, dtype = _resolve_device(device), _parse_dtype(dtype)
        if model is None and isinstance(pretrained, torch.nn.Module):
            model, pretrained = pretrained, None
        if model is not None:
            model = model.to(device=device, dtype=dtype)
        elif pretrained is None:
            raise EvaluationError("model_args needs pretrained=DIR (a checkpoint directory or a preset name)")
        else:
            model = load(str(pretrained), device=device, dtype=dtype)
        self.tokenizer = resolve_tokenizer(model, tokenizer)
        if prune_ratio not in (None, "", 0, 0.0, "0"):
            ids = None
            if pruning.NEEDS.get(criterion):  # a text file, else the corpus validation split
                ids = pruning.calibration_tokens(model, Path(calibration) if calibration else None,
                                                 tokenizer=self.tokenizer, n_tokens=int(calibration_tokens))
            model = pruning.prune(model, float(prune_ratio), criterion=criterion, mode=mode, calibration=ids)
        if backend:
            model.backend = backend
        self.model = model.eval()
        self._device = torch.device(device)
        self.batch_size = _parse_batch_size(batch_size)
        self._max_length = int(max_length) if max_length else None
        self.max_gen_toks = int(max_gen_toks)
        self.add_bos_token = add_bos_token
        self.custom_prefix_token_id = prefix_token_id
        self.ignored_args = kwargs  # e.g. lm-eval's trust_remote_code / parallelize: meaningless here

    # ---- what lm-eval asks of a model ---------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self.custom_prefix_token_id is not None:
            return int(self.custom_prefix_token_id)
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        n = getattr(self.tokenizer, "model_max_length", None)
        return n if n and n < 1_000_000_000 else DEFAULT_MAX_LENGTH

    def tok_encode(self, string: str, add_special_tokens=None, left_truncate_len=None, **kwargs) -> list[int]:
        """HFLM.tok_encode: the tokenizer's own special-token default unless told otherwise."""
        from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix

        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        enc = self.tokenizer.encode(string, **special)
        return enc[-left_truncate_len:] if left_truncate_len else enc

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        """[(request, context ids, continuation ids)] → [(sum log p(continuation), is greedy)], in input
        order.

        Longest first, right-padded batches; continuation logits are the last len(continuation) positions of
        (context + continuation)[-(max_length + 1):][:-1], as in HFLM._loglikelihood_tokens.
        """
        order = sorted(range(len(requests)), key=lambda i: (-len(requests[i][1]) - len(requests[i][2]),
                                                            tuple(requests[i][1] + requests[i][2])))
        bs = override_bs or self.batch_size
        out: list = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="Running loglikelihood requests")
        for b0 in range(0, len(order), bs):
            idx = order[b0:b0 + bs]
            inps, conts = [], []
            for i in idx:
                _, ctx, cont = requests[i]
                if not ctx or not cont:
                    raise EvaluationError("empty context or continuation after tokenization")
                inps.append((ctx + cont)[-(self.max_length + 1):][:-1])
                conts.append(cont)
            batch = pad_sequence([torch.tensor(x, dtype=torch.long) for x in inps], batch_first=True)
            logp = F.log_softmax(self.model(batch.to(self.device)).float(), dim=-1)  # (b, width, vocab)
            for r, (i, x, cont) in enumerate(zip(idx, inps, conts)):
                lp = logp[r, len(x) - len(cont):len(x)]  # (len(cont), vocab)
                target = torch.tensor(cont, dtype=torch.long, device=lp.device)
                greedy = bool((lp.argmax(-1) == target).all())
                answer = (float(lp.gather(-1, target[:, None]).sum()), greedy)
                out[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
                bar.update(1)
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-text log-likelihood in disjoint windows of max_length tokens (HFLM.loglikelihood_rolling)."""
        from lm_eval import utils

        windows, owner = [], []
        for k, (string,) in enumerate(tqdm([r.args for r in requests], disable=disable_tqdm)):
            toks = self.tok_encode(string)
            rolling = utils.get_rolling_token_windows(token_list=toks, prefix_token=self.prefix_token_id,
                                                      max_seq_len=self.max_length, context_len=1)
            for ctx, cont in map(utils.make_disjoint_window, rolling):
                windows.append((None, ctx, cont))
                owner.append(k)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=True) if windows else []
        totals = [0.0] * len(requests)
        for k, (lp, _) in zip(owner, scores):
            totals[k] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled) continuation with the recurrent state, stopped at any `until` string or eos."""
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        vocab = min(len(self.tokenizer), self.model.config.padded_vocab_size)
        out = []
        for context, gen_kwargs in tqdm([r.args for r in requests], disable=disable_tqdm,
                                        desc="Running generate_until requests"):
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_new = int(kwargs.pop("max_gen_toks"))
            temperature = float(kwargs.get("temperature", 0.0) or 0.0) if kwargs.get("do_sample") else 0.0
            room = self.max_length - max_new  # context tokens kept
            if room <= 0:
                raise EvaluationError(f"max_gen_toks {max_new} must be below max_length {self.max_length}")
            ids = self.tok_encode(context, left_truncate_len=room) or [self.prefix_token_id]
            cache = self.model.allocate_cache(1)
            logits = self.model(torch.tensor([ids], device=self.device), cache)[:, -1]
            new: list[int] = []
            text = ""
            for _ in range(max_new):
                lg = logits[:, :vocab].float()
                if temperature > 0:
                    nxt = int(torch.multinomial(torch.softmax(lg / temperature, -1), 1))
                else:
                    nxt = int(lg.argmax(-1))
                if nxt == self.eot_token_id:
                    break
                new.append(nxt)
                text = self.tok_decode(new)
                if any(s and s in text for s in until):
                    break
                logits = self.model.step(torch.tensor([nxt], device=self.device), cache)
            for s in until:
                if s:
                    text = text.split(s)[0]
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            out.append(text)
        return out


def run_lm_eval_cli(argv) -> int:
    """Run lm-eval's command line (`lm-eval run|ls|validate …`) with `--model perfmamba` registered and our
    task directory added to `--include_path`. Returns the exit status."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    cli = HarnessCLI()
    saved = sys.argv
    # HarnessCLI.parse_args reads sys.argv (legacy `run` insertion)
    sys.argv = ["lm-eval", *[str(a) for a in argv]]
    try:
        try:
            args = cli.parse_args()
        except SystemExit as e:  # --help, or an argparse error already printed
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if hasattr(args, "include_path"):
            args.include_path = _with_our_tasks(args.include_path)  # TaskManager accepts a list of paths
        cli.execute(args)
    finally:
        sys.argv = saved
    return 0
