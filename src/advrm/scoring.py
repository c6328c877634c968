"""Scoring responses: the ``Scorer`` protocol and its implementations.

A scorer maps (prompt, response) pairs to one float each::

    scorer.score(prompts, responses) -> np.ndarray   # 1-D float64, len(responses)

Implementations: :class:`HFRewardScorer` (a Hugging Face sequence classifier, fed exactly the text TRL's
``RewardTrainer`` trains on), :class:`CallableScorer` (any function, e.g. the synthetic world's gold
judge), :class:`RemoteScorer` (an HTTP reward server, advrm's or OpenRLHF's protocol) and
:class:`Ensemble`. :func:`serve_scorer` exposes any scorer over HTTP. :class:`Normalizer` turns raw
scores into the per-prompt z-scores of method.md section 1.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from .errors import AdvrmError
from .io import atomic_write_json

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Protocol and checks
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class Scorer(Protocol):
    """Anything with a ``name`` and ``score(prompts, responses) -> np.ndarray`` (1-D float64)."""

    name: str

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray: ...


def check_scores(scores: Any, n: int, source_name: str) -> np.ndarray:
    """Return ``scores`` as a 1-D float64 array of length ``n``; AdvrmError if the shape or values are bad."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AdvrmError(
            f"scorer '{source_name}' returned something that is not a list of numbers ({e}); "
            "a scorer must return one float per response"
        ) from e
    if arr.ndim == 2 and 1 in arr.shape:  # (N, 1) logits or a (1, N) row
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.shape[0] != n:
        got = arr.shape[0] if arr.ndim == 1 else f"an array of shape {arr.shape}"
        raise AdvrmError(
            f"scorer '{source_name}' returned {got} scores for {n} responses; "
            "a scorer must return exactly one float per response"
        )
    for label, bad in (("NaN", np.isnan(arr)), ("infinite", np.isinf(arr))):
        if bad.any():
            raise AdvrmError(
                f"scorer '{source_name}' returned {int(bad.sum())} {label} scores out of {n}; "
                "check the model (dtype overflow, untrained head) and the inputs (empty or over-long texts)"
            )
    return arr


def _check_pairs(prompts: Sequence[str], responses: Sequence[str], name: str) -> tuple[list[str], list[str]]:
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise AdvrmError(
            f"scorer '{name}' got {len(prompts)} prompts for {len(responses)} responses; "
            "pass one prompt per response (repeat a prompt for each of its responses)"
        )
    for kind, items in (("prompt", prompts), ("response", responses)):
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise AdvrmError(f"scorer '{name}': {kind} {i} is a {type(s).__name__}, not a string")
    return prompts, responses


# --------------------------------------------------------------------------------------------------
# Hugging Face reward model
# --------------------------------------------------------------------------------------------------

TextFormat = Literal["auto", "plain", "chat"]


def plain_text(prompt: str, response: str, eos_token: str) -> str:
    """TRL ``RewardTrainer``'s text for non-conversational data: eos appended to the response if absent."""
    return prompt + (response if response.endswith(eos_token) else response + eos_token)


def chat_messages(prompt: str, response: str) -> list[dict[str, str]]:
    """The conversation a chat-format RM scores: one user turn, one assistant turn."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


class HFRewardScorer:
    """A Hugging Face sequence-classification reward model (``num_labels == 1``) as a :class:`Scorer`.

    Text is tokenized as TRL 1.16's ``RewardTrainer`` does: ``"plain"`` is
    ``tokenizer(text=prompt + response + eos_token)`` with the tokenizer's default special tokens (a bos
    is added where the tokenizer adds one); ``"chat"`` is ``tokenizer.apply_chat_template`` of a user and
    an assistant message; ``"auto"`` is chat when the tokenizer has a chat template, else plain.
    Sequences are right-padded by hand (as TRL's collator does), so the tokenizer's ``padding_side`` does
    not matter, and sorted by length so that batches carry little padding. ``n_queries`` counts the
    responses scored so far (the attack's query budget for the target RM).
    """

    def __init__(
        self,
        path_or_model: str | Path | Any,
        tokenizer: Any | None = None,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        text_format: TextFormat = "auto",
        trust_remote_code: bool = False,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        from .models import load_reward_model, load_tokenizer

        if text_format not in ("auto", "plain", "chat"):
            raise AdvrmError(f"text_format must be 'auto', 'plain' or 'chat', got {text_format!r}")
        if batch_size < 1:
            raise AdvrmError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(path_or_model, str | Path):
            model = load_reward_model(
                path_or_model, trust_remote_code=trust_remote_code, dtype=dtype, device=device
            )
            if tokenizer is None:
                tokenizer = load_tokenizer(path_or_model, trust_remote_code=trust_remote_code)
            default_name = Path(path_or_model).name or str(path_or_model)
        else:
            model = path_or_model
            if tokenizer is None:
                raise AdvrmError("HFRewardScorer got a model object but no tokenizer; pass tokenizer=...")
            if device is not None:
                model = model.to(device)
            model.eval()
            default_name = Path(str(getattr(model.config, "_name_or_path", "") or "hf-rm")).name
        if getattr(model.config, "num_labels", 1) != 1:
            raise AdvrmError(
                f"the reward model has num_labels={model.config.num_labels}; a reward model outputs one score"
            )
        if tokenizer.pad_token_id is None:
            raise AdvrmError(
                "the reward model's tokenizer has no pad token; set one distinct from eos "
                "(tokenizer.pad_token = ...) or call advrm.models.ensure_pad_token(tokenizer, model)"
            )
        text_cfg = model.config.get_text_config()
        if text_cfg.pad_token_id is None:
            text_cfg.pad_token_id = tokenizer.pad_token_id  # what RewardTrainer sets before training
        elif text_cfg.pad_token_id != tokenizer.pad_token_id:
            raise AdvrmError(
                f"the reward model's config.pad_token_id ({text_cfg.pad_token_id}) differs from the tokenizer's "
                f"pad token id ({tokenizer.pad_token_id}); the head pools at the last non-pad token, so pass "
                "the tokenizer the model was trained with"
            )
        if text_format == "auto":
            text_format = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
        elif text_format == "chat" and not getattr(tokenizer, "chat_template", None):
            raise AdvrmError(
                "text_format='chat' but the tokenizer has no chat template; use text_format='plain'"
            )
        if text_format == "plain" and tokenizer.eos_token is None:
            raise AdvrmError("the tokenizer has no eos token, which plain-text RM inputs end with; set one")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.text_format: str = text_format
        self.name = name or default_name
        self.n_queries = 0

    def __repr__(self) -> str:
        return f"HFRewardScorer(name={self.name!r}, text_format={self.text_format!r}, batch_size={self.batch_size})"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of every (prompt, response) pair, unpadded, exactly as TRL's RewardTrainer builds them."""
        tok = self.tokenizer
        if self.text_format == "chat":
            return [
                list(
                    tok.apply_chat_template(chat_messages(p, r), tokenize=True, return_dict=True)["input_ids"]
                )
                for p, r in zip(prompts, responses, strict=True)
            ]
        texts = [plain_text(p, r, tok.eos_token) for p, r in zip(prompts, responses, strict=True)]
        return [list(ids) for ids in tok(text=texts)["input_ids"]]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        prompts, responses = _check_pairs(prompts, responses, self.name)
        if not responses:
            return np.zeros(0, dtype=np.float64)
        ids = self.encode(prompts, responses)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out = np.empty(len(ids), dtype=np.float64)
        pad_id = int(self.tokenizer.pad_token_id)
        device = self.device
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in idx)
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    attention[row, : len(ids[i])] = 1
                logits = self.model(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
                ).logits
                out[idx] = logits.reshape(len(idx), -1)[:, 0].double().cpu().numpy()
        self.n_queries += len(responses)
        return check_scores(out, len(responses), self.name)


# --------------------------------------------------------------------------------------------------
# Any function
# --------------------------------------------------------------------------------------------------


class CallableScorer:
    """Wrap ``fn(prompts, responses) -> list[float]`` as a :class:`Scorer` (checked, counted)."""

    def __init__(self, fn: Callable[[list[str], list[str]], Any], name: str) -> None:
        self.fn = fn
        self.name = name
        self.n_queries = 0

    def __repr__(self) -> str:
        return f"CallableScorer(name={self.name!r})"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        prompts, responses = _check_pairs(prompts, responses, self.name)
        if not responses:
            return np.zeros(0, dtype=np.float64)
        scores = check_scores(self.fn(prompts, responses), len(responses), self.name)
        self.n_queries += len(responses)
        return scores


# --------------------------------------------------------------------------------------------------
# HTTP: client and server
# --------------------------------------------------------------------------------------------------

RemoteProtocol = Literal["advrm", "openrlhf"]
_PATHS = {"advrm": "/score", "openrlhf": "/get_reward"}
_MAX_BODY = 256 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the Authorization header to wherever they point."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _error_detail(e: urllib.error.HTTPError, token: str | None) -> str:
    """The server's ``{"error": ...}`` message (or the start of its body), one line, token redacted."""
    try:
        raw = e.read(2000).decode("utf-8", "replace")
    except OSError:
        return str(e.reason)
    try:
        reply = json.loads(raw)
        text = str(reply.get("error", raw)) if isinstance(reply, dict) else raw
    except ValueError:
        text = raw
    return _redact(" ".join(text.split()), token)[:200] or str(e.reason)


class RemoteScorer:
    """A reward server reached over HTTP (stdlib ``urllib``, JSON POST) as a :class:`Scorer`.

    Protocols: ``"advrm"`` sends ``{"prompts": [...], "responses": [...]}`` and reads ``{"scores": [...]}``;
    ``"openrlhf"`` is OpenRLHF's ``--reward.remote_url`` protocol: it sends
    ``{"query": [prompt + response, ...], "prompts": [...]}`` and reads ``{"rewards": [...]}``. ``url`` is
    the full endpoint (e.g. ``http://host:5000/score`` or ``.../get_reward``).

    The bearer token is read from the environment variable ``token_env`` at every call and only put in
    the ``Authorization`` header; it is never stored, printed or put in an error message. Connection
    errors, timeouts and HTTP 5xx are retried ``retries`` times with exponential backoff (waits of
    ``backoff``, ``2 * backoff``, ``4 * backoff`` ... seconds); then an AdvrmError is raised. Redirects
    are refused rather than followed (urllib would resend the token to the new location).
    """

    def __init__(
        self,
        url: str,
        *,
        protocol: RemoteProtocol = "advrm",
        token_env: str | None = "ADVRM_RM_TOKEN",
        timeout: float = 60.0,
        batch_size: int = 64,
        retries: int = 3,
        backoff: float = 0.5,
        name: str | None = None,
    ) -> None:
        if protocol not in _PATHS:
            raise AdvrmError(f"protocol must be 'advrm' or 'openrlhf', got {protocol!r}")
        parsed = urllib.parse.urlsplit(url)
        if parsed.username is not None or parsed.password is not None:
            raise AdvrmError(
                "the reward server URL holds credentials (user:password@host), which would be written to "
                f"run files and logs; drop them and put the token in ${token_env or 'ADVRM_RM_TOKEN'}"
            )
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AdvrmError(f"reward server URL must be http(s)://host[:port]/path, got {url!r}")
        if batch_size < 1 or retries < 0 or timeout <= 0:
            raise AdvrmError("RemoteScorer needs batch_size >= 1, retries >= 0 and timeout > 0")
        self.url = url
        self.protocol = protocol
        self.token_env = token_env
        self.timeout = timeout
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.name = name or f"remote:{parsed.netloc}{parsed.path}"
        self.n_queries = 0

    def __repr__(self) -> str:
        return f"RemoteScorer(url={self.url!r}, protocol={self.protocol!r}, token_env={self.token_env!r})"

    def _token_hint(self) -> str:
        if not self.token_env:
            return "the server wants a token: pass token_env= naming the variable that holds it"
        state = "set" if os.environ.get(self.token_env) else "not set"
        return f"check ${self.token_env} (it is {state})"

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        token = os.environ.get(self.token_env) if self.token_env else None
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with _OPENER.open(request, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise AdvrmError(f"HTTP {e.code} from {self.url}; {self._token_hint()}") from None
                if 300 <= e.code < 400:
                    raise AdvrmError(
                        f"HTTP {e.code} from {self.url}: a redirect, which advrm does not follow (it would "
                        "send the token on); pass the final URL of the reward endpoint"
                    ) from None
                reason = f"HTTP {e.code}: {_error_detail(e, token)}"
                if e.code >= 500:
                    continue
                raise AdvrmError(
                    f"{reason} from {self.url}; check the URL and the protocol ({self.protocol!r})"
                ) from None
            except OSError as e:  # URLError (refused, DNS), timeouts, resets
                reason = _redact(str(getattr(e, "reason", e)), token)
                continue
            try:
                reply = json.loads(raw)
            except ValueError:
                raise AdvrmError(
                    f"the reply from {self.url} is not JSON; check that the URL is a reward endpoint"
                ) from None
            if not isinstance(reply, dict):
                raise AdvrmError(f"the reply from {self.url} is not a JSON object; check the protocol")
            return reply
        raise AdvrmError(
            f"reward server {self.url} failed {self.retries + 1} times (last: {reason}); "
            "check that it is running and reachable"
        )

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        prompts, responses = _check_pairs(prompts, responses, self.name)
        out: list[np.ndarray] = []
        for start in range(0, len(responses), self.batch_size):
            p = prompts[start : start + self.batch_size]
            r = responses[start : start + self.batch_size]
            if self.protocol == "advrm":
                reply = self._post({"prompts": p, "responses": r})
                key = "scores"
            else:
                reply = self._post({"query": [a + b for a, b in zip(p, r, strict=True)], "prompts": p})
                key = "rewards" if "rewards" in reply else "scores"
            if key not in reply:
                raise AdvrmError(
                    f"the reply from {self.url} has no '{key}' field; check protocol={self.protocol!r}"
                )
            out.append(check_scores(reply[key], len(r), self.name))
            self.n_queries += len(r)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


class _ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _string_list(payload: dict[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _ClientError(400, f"'{key}' must be a list of strings")
    return value


def _parse_request(path: str, payload: Any) -> tuple[list[str], list[str]]:
    """(prompts, responses) of an advrm (/score) or OpenRLHF (/get_reward) request."""
    if not isinstance(payload, dict):
        raise _ClientError(400, "the body must be a JSON object")
    prompts = _string_list(payload, "prompts")
    if path == "/score":
        responses = _string_list(payload, "responses")
        if len(responses) != len(prompts):
            raise _ClientError(400, "'prompts' and 'responses' must have the same length")
        return prompts, responses
    queries = _string_list(payload, "query")
    if len(queries) != len(prompts):
        raise _ClientError(400, "'query' and 'prompts' must have the same length")
    responses = []
    for i, (q, p) in enumerate(zip(queries, prompts, strict=True)):
        if not q.startswith(p):
            raise _ClientError(
                400, f"query {i} does not start with its prompt; send query = prompt + response"
            )
        responses.append(q[len(p) :])
    return prompts, responses


def serve_scorer(
    scorer: Scorer, host: str = "127.0.0.1", port: int = 0, token_env: str | None = None
) -> ThreadingHTTPServer:
    """An HTTP server exposing ``scorer``; the caller runs ``serve_forever()`` (e.g. in a thread).

    ``POST /score`` speaks advrm's protocol, ``POST /get_reward`` OpenRLHF's (reply
    ``{"rewards": [...], "scores": [...]}``), so an advrm RM can serve OpenRLHF/verl as a remote reward.
    With ``token_env``, that variable must be set now (else AdvrmError) and requests must carry
    ``Authorization: Bearer <token>`` (else 401). The OpenRLHF endpoint needs ``prompts`` in the request
    to split each ``query`` into prompt + response. ``port=0`` picks a free port; the server's ``url`` attribute is its base URL.
    Scoring is serialised with a lock (one model, many request threads).
    """
    token = os.environ.get(token_env) if token_env else None
    if token_env and not token:
        raise AdvrmError(
            f"serve_scorer(token_env={token_env!r}) but ${token_env} is not set; set it or drop token_env"
        )
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "advrm"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path.rstrip("/")
            try:
                if path not in ("/score", "/get_reward"):
                    raise _ClientError(404, "unknown path; POST to /score (advrm) or /get_reward (OpenRLHF)")
                if token is not None:
                    sent = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                        raise _ClientError(401, "missing or wrong bearer token")
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    raise _ClientError(413, "request body too large; send smaller batches")
                try:
                    payload = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    raise _ClientError(400, "the body is not JSON") from None
                prompts, responses = _parse_request(path, payload)
                with lock:
                    scores = scorer.score(prompts, responses)
                values = [float(s) for s in scores]
            except _ClientError as e:
                self._reply(e.status, {"error": str(e)})
                return
            except AdvrmError as e:
                self._reply(500, {"error": str(e)})
                return
            except Exception as e:  # a bug in the scorer: answer, and keep the traceback in the log
                logger.exception("scorer %r failed on %s", scorer.name, path)
                self._reply(500, {"error": f"{type(e).__name__} in scorer {scorer.name!r}"})
                return
            if path == "/score":
                self._reply(200, {"scores": values})
            else:
                self._reply(200, {"rewards": values, "scores": values})

        def do_GET(self) -> None:
            self._reply(200 if self.path.rstrip("/") in ("", "/health") else 404, {"name": scorer.name})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    server.url = f"http://{bound_host}:{bound_port}"  # type: ignore[attr-defined]
    return server


# --------------------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------------------

Reduction = Literal["mean", "min", "mean_minus_k_std"]


def _as_matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1:
        raise AdvrmError(f"an ensemble score matrix must be (members, responses), got shape {m.shape}")
    return m


class Ensemble:
    """Several scorers of the same responses; itself a :class:`Scorer` via ``reduction``.

    Reductions over members (Coste et al. 2023): ``mean``, ``min`` (worst case) and
    ``mean_minus_k_std``, the uncertainty-weighted ``mean - k * spread`` where spread is the standard
    deviation over members (``penalty="std"``, ddof=0: the members are the whole population) or, as in
    Coste et al., the variance (``penalty="var"``, ddof=0).
    """

    def __init__(
        self,
        members: Sequence[Scorer],
        reduction: Reduction = "mean",
        k: float = 1.0,
        penalty: Literal["std", "var"] = "std",
        name: str | None = None,
    ) -> None:
        if not members:
            raise AdvrmError("an Ensemble needs at least one member scorer")
        if reduction not in ("mean", "min", "mean_minus_k_std"):
            raise AdvrmError(f"reduction must be 'mean', 'min' or 'mean_minus_k_std', got {reduction!r}")
        if penalty not in ("std", "var"):
            raise AdvrmError(f"penalty must be 'std' or 'var', got {penalty!r}")
        self.members = list(members)
        self.reduction = reduction
        self.k = float(k)
        self.penalty = penalty
        self.name = name or f"ensemble-{reduction}({','.join(m.name for m in self.members)})"

    def __repr__(self) -> str:
        return f"Ensemble(name={self.name!r}, members={len(self.members)}, reduction={self.reduction!r})"

    def score_matrix(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Scores of every member, shape (M members, N responses)."""
        prompts, responses = _check_pairs(prompts, responses, self.name)
        return np.stack(
            [check_scores(m.score(prompts, responses), len(responses), m.name) for m in self.members]
        )

    @staticmethod
    def mean(matrix: Any) -> np.ndarray:
        return _as_matrix(matrix).mean(axis=0)

    @staticmethod
    def min(matrix: Any) -> np.ndarray:
        return _as_matrix(matrix).min(axis=0)

    @staticmethod
    def mean_minus_k_std(matrix: Any, k: float = 1.0, penalty: Literal["std", "var"] = "std") -> np.ndarray:
        """``mean - k * std`` (or ``- k * variance`` with ``penalty="var"``) over members, ddof=0."""
        m = _as_matrix(matrix)
        spread = m.std(axis=0, ddof=0) if penalty == "std" else m.var(axis=0, ddof=0)
        return m.mean(axis=0) - k * spread

    @staticmethod
    def disagreement(z1: Any, z2: Any) -> np.ndarray:
        """The uncertainty ``U = z1 - z2`` of method.md (target RM's z minus the second RM's z)."""
        a, b = np.asarray(z1, dtype=np.float64), np.asarray(z2, dtype=np.float64)
        if a.shape != b.shape:
            raise AdvrmError(f"z1 and z2 must have the same shape, got {a.shape} and {b.shape}")
        return a - b

    def reduce(self, matrix: Any) -> np.ndarray:
        if self.reduction == "mean":
            return self.mean(matrix)
        if self.reduction == "min":
            return self.min(matrix)
        return self.mean_minus_k_std(matrix, self.k, self.penalty)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.reduce(self.score_matrix(prompts, responses))


# --------------------------------------------------------------------------------------------------
# Per-prompt z-scores
# --------------------------------------------------------------------------------------------------


class Normalizer:
    """Per-prompt z-scores against reference-policy samples (method.md section 1).

    ``z(x, y) = (R(x, y) - mean_ref(x)) / std_ref(x)``, with mean and std (ddof=0) over the K reference
    responses to prompt ``x``. So that a prompt whose reference responses all score alike does not
    divide by ~0, std is floored at ``std_floor = max(REL_EPS * global_std, ABS_EPS)``, where
    ``global_std`` is the std of all reference scores pooled. Statistics are computed once
    (:meth:`fit`, the largest fixed cost of an attack) and saved with :meth:`to_json`.
    """

    REL_EPS = 1e-3
    ABS_EPS = 1e-8
    FORMAT = "advrm.normalizer/1"

    def __init__(
        self,
        means: dict[str, float],
        stds: dict[str, float],
        std_floor: float,
        counts: dict[str, int] | None = None,
        scorer_name: str | None = None,
    ) -> None:
        if set(means) != set(stds):
            raise AdvrmError("Normalizer: means and stds must cover the same prompts")
        self.means = dict(means)
        self.stds = dict(stds)
        self.std_floor = float(std_floor)
        self.counts = dict(counts) if counts is not None else {}
        self.scorer_name = scorer_name

    def __repr__(self) -> str:
        return f"Normalizer(prompts={len(self.means)}, scorer={self.scorer_name!r}, std_floor={self.std_floor:.3g})"

    def __len__(self) -> int:
        return len(self.means)

    def __contains__(self, prompt: object) -> bool:
        return prompt in self.means

    @classmethod
    def from_scores(
        cls,
        prompts: Sequence[str],
        reference_scores: Sequence[Sequence[float]],
        scorer_name: str | None = None,
    ) -> Normalizer:
        """Statistics from already computed scores: ``reference_scores[i]`` are prompt i's K reference scores.

        A prompt listed more than once has all its rows pooled.
        """
        prompts = list(prompts)
        if len(prompts) != len(reference_scores):
            raise AdvrmError(
                f"Normalizer got {len(prompts)} prompts but {len(reference_scores)} rows of reference scores"
            )
        if not prompts:
            raise AdvrmError("Normalizer needs at least one prompt with reference responses")
        pooled: dict[str, list[float]] = {}
        for p, row in zip(prompts, reference_scores, strict=True):
            pooled.setdefault(p, []).extend(float(s) for s in row)
        small = [p for p, s in pooled.items() if len(s) < 2]
        if small:
            raise AdvrmError(
                f"{len(small)} prompts have fewer than 2 reference responses (first: {small[0][:60]!r}); "
                "a per-prompt std needs K >= 2 reference samples per prompt (method.md uses 8)"
            )
        every = np.concatenate([np.asarray(s, dtype=np.float64) for s in pooled.values()])
        check_scores(every, every.size, scorer_name or "reference scores")
        floor = max(cls.REL_EPS * float(every.std()), cls.ABS_EPS)
        means = {p: float(np.mean(s)) for p, s in pooled.items()}
        stds = {p: float(np.std(s)) for p, s in pooled.items()}
        return cls(means, stds, floor, {p: len(s) for p, s in pooled.items()}, scorer_name)

    @classmethod
    def fit(
        cls, scorer: Scorer, prompts: Sequence[str], reference_responses: Sequence[Sequence[str]]
    ) -> Normalizer:
        """Score the K reference responses of every prompt with ``scorer`` (one call) and keep mean/std."""
        prompts = list(prompts)
        if len(prompts) != len(reference_responses):
            raise AdvrmError(
                f"Normalizer.fit got {len(prompts)} prompts but {len(reference_responses)} lists of responses"
            )
        flat_p = [p for p, rs in zip(prompts, reference_responses, strict=True) for _ in rs]
        flat_r = [r for rs in reference_responses for r in rs]
        scores = check_scores(scorer.score(flat_p, flat_r), len(flat_r), scorer.name)
        rows, start = [], 0
        for rs in reference_responses:
            rows.append(scores[start : start + len(rs)])
            start += len(rs)
        return cls.from_scores(prompts, rows, scorer_name=scorer.name)

    def _lookup(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [p for p in prompts if p not in self.means]
        if missing:
            raise AdvrmError(
                f"{len(missing)} of {len(prompts)} prompts have no reference statistics "
                f"(first: {missing[0][:60]!r}); fit the Normalizer on these prompts or score the prompts "
                "it was fitted on"
            )
        mean = np.array([self.means[p] for p in prompts], dtype=np.float64)
        std = np.array([max(self.stds[p], self.std_floor) for p in prompts], dtype=np.float64)
        return mean, std

    def mean(self, prompts: Sequence[str]) -> np.ndarray:
        return self._lookup(list(prompts))[0]

    def std(self, prompts: Sequence[str]) -> np.ndarray:
        """Per-prompt std, floored at ``std_floor``."""
        return self._lookup(list(prompts))[1]

    def z(self, prompts: Sequence[str], raw_scores: Any) -> np.ndarray:
        """z-scores of ``raw_scores[i]`` (a score of a response to ``prompts[i]``)."""
        prompts = list(prompts)
        raw = check_scores(raw_scores, len(prompts), self.scorer_name or "raw scores")
        mean, std = self._lookup(prompts)
        return (raw - mean) / std

    def to_dict(self) -> dict[str, Any]:
        prompts = list(self.means)
        return {
            "format": self.FORMAT,
            "scorer_name": self.scorer_name,
            "std_floor": self.std_floor,
            "prompts": prompts,
            "mean": [self.means[p] for p in prompts],
            "std": [self.stds[p] for p in prompts],
            "count": [self.counts.get(p, 0) for p in prompts],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "data") -> Normalizer:
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise AdvrmError(
                f"{source} is not an advrm Normalizer file ({cls.FORMAT}); recompute it with fit()"
            )
        try:
            prompts, mean, std = data["prompts"], data["mean"], data["std"]
            count = data.get("count") or [0] * len(prompts)
            if not len(prompts) == len(mean) == len(std) == len(count):
                raise ValueError("lists of different lengths")
            bad = [v for v in [*mean, *std, data["std_floor"]] if not math.isfinite(float(v))]
            if bad:
                raise ValueError("non-finite statistics")
            return cls(
                dict(zip(prompts, map(float, mean), strict=True)),
                dict(zip(prompts, map(float, std), strict=True)),
                float(data["std_floor"]),
                dict(zip(prompts, map(int, count), strict=True)),
                data.get("scorer_name"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AdvrmError(
                f"{source} is a damaged Normalizer file ({e}); recompute it with fit()"
            ) from None

    def to_json(self, path: str | Path) -> Path:
        """Write the statistics (atomically) to ``path``; read back with :meth:`from_json`."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> Normalizer:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AdvrmError(
                f"Normalizer file '{p}' does not exist; compute it with Normalizer.fit()"
            ) from None
        except ValueError:
            raise AdvrmError(
                f"Normalizer file '{p}' is not valid JSON; recompute it with Normalizer.fit()"
            ) from None
        return cls.from_dict(data, source=f"'{p}'")
