"""A reward-server token in the environment never reaches a run file, the console or the logs.

The target RM of an attack is served over HTTP behind a bearer token (``serve_scorer(...,
token_env="ADVRM_RM_TOKEN")``); the attack runs through the real CLI with ``--target URL`` and a local
second RM. Afterwards every byte under the run directory, everything written to stdout/stderr (at the
file-descriptor level, so progress bars and C extensions count too) and every log record is searched
for the token, raw and base64-encoded.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from pathlib import Path

import pytest
from test_bad_input import TINY_ATTACK, one_thread  # noqa: F401 - the module's thread setting

from advrm.cli import main
from advrm.errors import AdvrmError
from advrm.scoring import HFRewardScorer, RemoteScorer, serve_scorer
from advrm.sources import make_scorer


@pytest.fixture()
def secret(monkeypatch) -> str:
    token = "tok-" + secrets.token_hex(16)
    monkeypatch.setenv("ADVRM_RM_TOKEN", token)
    return token


@pytest.fixture()
def server(tiny_rms, secret):
    s = serve_scorer(HFRewardScorer(tiny_rms[0]), token_env="ADVRM_RM_TOKEN")
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s
    s.shutdown()
    s.server_close()


def forms(token: str) -> list[bytes]:
    """The token as it could leak: raw, in a header, base64 (basic auth, pickles of bytes)."""
    raw = token.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(b"Bearer " + raw), token.encode("utf-16-le")]


def leaks(data: bytes, token: str) -> list[bytes]:
    return [f for f in forms(token) if f in data]


def attack_argv(url: str, second: Path, world: Path, out: Path) -> list[str]:
    argv = ["attack", "--target", url, "--second", str(second), "--policy", str(world / "policy")]
    argv += ["--prompts", str(world / "prompts_attack.jsonl"), "--out", str(out)]
    argv += ["--eval-prompts", str(world / "prompts_heldout.jsonl"), "--validator", "gold"]
    return argv + TINY_ATTACK


def test_attack_against_a_served_rm_leaks_the_token_nowhere(
    server, secret, tiny_rms, tiny_world, tmp_path, capfd, caplog
):
    import transformers

    url = f"{server.url}/score"
    assert isinstance(make_scorer(url), RemoteScorer)  # a plain URL is a RemoteScorer of advrm's protocol
    out = tmp_path / "attack"
    caplog.set_level(logging.DEBUG)
    transformers.logging.set_verbosity_debug()
    try:
        main(attack_argv(url, tiny_rms[1], tiny_world, out))
    finally:
        transformers.logging.set_verbosity_warning()
    captured = capfd.readouterr()
    assert (out / "metrics.json").exists() and (out / "adversarial.jsonl").exists()
    assert (out / ".rl" / "checkpoint-2").is_dir()  # checkpoints (pickled trainer state) are searched too

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    found = {str(p): leaks(p.read_bytes(), secret) for p in files}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
    log = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert caplog.records  # logging was captured, at DEBUG
    for name, text in (("stdout", captured.out), ("stderr", captured.err), ("log", log)):
        assert not leaks(text.encode(), secret), name
    assert "ADVRM_RM_TOKEN" not in log


def test_wrong_or_missing_token_is_one_line_without_the_token(
    server, secret, tiny_rms, tiny_world, tmp_path, capfd, monkeypatch
):
    url = f"{server.url}/score"
    wrong = "tok-" + secrets.token_hex(16)
    monkeypatch.setenv("ADVRM_RM_TOKEN", wrong)
    with pytest.raises(AdvrmError) as e:
        RemoteScorer(url, retries=0).score(["p"], ["r"])
    message = str(e.value)
    assert message == f"HTTP 401 from {url}; check $ADVRM_RM_TOKEN (it is set)"
    assert not leaks(message.encode(), secret) and not leaks(message.encode(), wrong)

    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(attack_argv(url, tiny_rms[1], tiny_world, tmp_path / "attack"))
    captured = capfd.readouterr()
    assert exit_.value.code == 2 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: HTTP 401 from {url}; check $ADVRM_RM_TOKEN (it is set)"]
    for token in (secret, wrong):
        assert not leaks((captured.out + captured.err).encode(), token)
        assert not any(leaks(p.read_bytes(), token) for p in (tmp_path / "attack").rglob("*") if p.is_file())

    monkeypatch.delenv("ADVRM_RM_TOKEN")
    with pytest.raises(AdvrmError, match=r"check \$ADVRM_RM_TOKEN \(it is not set\)"):
        RemoteScorer(url, retries=0).score(["p"], ["r"])


def test_credentials_in_the_url_are_refused_without_echoing_them(secret):
    for url in (f"http://user:{secret}@127.0.0.1:1/score", f"https://{secret}@example.org/score"):
        with pytest.raises(AdvrmError, match="holds credentials") as e:
            make_scorer(url)
        assert not leaks(str(e.value).encode(), secret)
