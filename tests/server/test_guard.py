"""The parts of the guard that need no server: which Host headers are answered, what is same-origin, the
log filter that hides tokens, and the job cost limit."""

import logging

import pytest

from t2v.server.guard import Hosts, RedactTokens, same_origin
from t2v.server.limits import DEFAULT_MAX_COST, JobError, Limits, check_params, default_max_cost


@pytest.mark.parametrize(
    "bound, extra, allowed, refused",
    [
        (
            "127.0.0.1",
            [],
            ["127.0.0.1:7860", "localhost:7860", "LOCALHOST", "[::1]:7860", "app.localhost:7860", "127.0.0.2", None],
            ["attacker.example", "attacker.example:7860", "10.0.0.5:7860", "", "a b", "x@127.0.0.1", "localhost.evil"],
        ),
        ("0.0.0.0", [], ["192.168.1.20:7860", "[fe80::1]:7860", "localhost"], ["attacker.example", "nas.lan:7860"]),
        ("nas.lan", [], ["nas.lan:7860", "NAS.LAN."], ["attacker.example", "x.nas.lan"]),
        (
            "127.0.0.1",
            ["t2v.example", ".corp.example"],
            ["t2v.example:443", "a.corp.example", "corp.example"],
            ["t2v.example.attacker.example", "xcorp.example", "attacker.example"],
        ),
        ("127.0.0.1", ["*"], ["attacker.example", "anything:1"], []),
    ],
)
def test_hosts(bound, extra, allowed, refused):
    hosts = Hosts(bound, extra)
    assert [h for h in allowed if not hosts.allows(h)] == []
    assert [h for h in refused if hosts.allows(h)] == []


def test_same_origin():
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same_origin("http://LOCALHOST:7860", "localhost:7860")
    for origin in ("null", "http://attacker.example", "http://127.0.0.1:7861", "file://", "http://127.0.0.1:7860@x"):
        assert not same_origin(origin, "127.0.0.1:7860"), origin
    assert not same_origin("http://127.0.0.1:7860", None)


def test_tokens_are_not_logged():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/?token=s3cret&x=1", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    assert "s3cret" not in record.getMessage() and "token=***&x=1" in record.getMessage()


def test_the_cost_limit(pipe):
    small = {"prompt": "a red circle", "num_frames": 4, "height": 32, "width": 32, "num_inference_steps": 2}
    assert check_params(small, pipe, Limits(max_cost=0.01))["num_frames"] == 4  # 0.008 megapixel-steps
    with pytest.raises(JobError, match=r"0\.01638 megapixel-steps .*; at most 0\.01 on this server") as e:
        check_params({**small, "num_inference_steps": 4}, pipe, Limits(max_cost=0.01))
    assert e.value.field == ""
    board = "scenes: [{prompt: a, frames: 20}, {prompt: b, frames: 20}]"
    with pytest.raises(JobError, match="megapixel-steps"):  # a storyboard's frames in all
        check_params(
            {"storyboard": board, "height": 32, "width": 32, "num_inference_steps": 4}, pipe, Limits(max_cost=0.1)
        )
    assert default_max_cost("cuda:1") == DEFAULT_MAX_COST["cuda"] > default_max_cost("cpu") == DEFAULT_MAX_COST["cpu"]
    weeks = {"prompt": "a", "num_frames": 256, "height": 1024, "width": 1024, "num_inference_steps": 1000}
    for device in ("cpu", "cuda"):  # the job: refused by every default
        with pytest.raises(JobError, match="megapixel-steps"):
            check_params(weeks, pipe, Limits(max_size=2048), device)
