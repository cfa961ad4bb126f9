"""``botify models`` against a real Redis: a clear one-line error for each bad request, and
nothing moved."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, KafkaException
from typer.testing import CliRunner

from botify import keys
from botify.model_store import ModelStore
from botify_cli import models as models_cli
from botify_cli.main import app
from tests.unit.model_store.samples import arrays, meta


@pytest.fixture
def model() -> str:
    return f"m_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {
        "BOTIFY_REDIS__URL": redis_url,
        "BOTIFY_MODELS__DIR": str(tmp_path / "models"),
        # Nothing is announced when a rollback is refused: an unreachable broker is fine.
        "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }


def publish(redis_url: str, models_dir: Path, model: str, count: int) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = ModelStore(models_dir, client, keep_versions=2)
            for i in range(count):
                await store.publish(meta(model), arrays(seed=i))
        finally:
            await client.aclose()

    asyncio.run(run())


def current(redis_url: str, models_dir: Path, model: str) -> int | None:
    async def run() -> int | None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await ModelStore(models_dir, client).current(model)
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing_here"], "model 'nothing_here' has no published version"),
        (["{model}", "9"], "{model} v9 was never published (in {dir}/{model}: v2, v3)"),
        (["{model}", "1"], "{model} v1 is not in {dir}/{model}: pruned"),
        (["{model}", "3"], "{model} v3 is already the current version"),
        (["{model}", "0"], "should be greater than or equal to 1"),
        (["Bad-Name"], "invalid model name 'Bad-Name'"),
    ],
)
def test_a_bad_rollback_is_one_line_of_error_and_moves_nothing(
    tmp_path: Path,
    redis_url: str,
    env: dict[str, str],
    model: str,
    args: list[str],
    message: str,
) -> None:
    publish(redis_url, tmp_path / "models", model, 3)  # keep_versions=2: v1 is pruned
    argv = ["models", "rollback", *(a.format(model=model) for a in args)]
    result = CliRunner().invoke(app, argv, env=env)
    assert result.exit_code == 2, result.output
    expected = message.format(model=model, dir=tmp_path / "models")
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert current(redis_url, tmp_path / "models", model) == 3


def test_an_unreachable_redis_is_one_line_of_error(tmp_path: Path) -> None:
    env = {"BOTIFY_REDIS__URL": "redis://127.0.0.1:1/0", "BOTIFY_RUN_DIR": str(tmp_path)}
    for argv in (["models", "rollback", "contextual"], ["models", "history", "contextual"]):
        result = CliRunner().invoke(app, argv, env=env)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: Redis at redis://127.0.0.1:1/0: ")
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_history_of_an_unknown_model_is_an_error(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["models", "history", "nothing_here"], env=env)
    assert result.exit_code == 2
    assert "model 'nothing_here' has no published version" in result.output


def test_an_announcement_that_cannot_be_sent_is_a_warning_after_the_pointer_moved(
    tmp_path: Path,
    redis_url: str,
    env: dict[str, str],
    model: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(redis_url, tmp_path / "models", model, 2)

    class Unbuildable:
        def __init__(self, *args: object) -> None:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "bad sasl.mechanism"))

    monkeypatch.setattr(models_cli, "ModelAnnouncer", Unbuildable)
    env = {**env, "BOTIFY_MODELS__POLL_S": "7"}
    result = CliRunner().invoke(app, ["models", "rollback", model], env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    warning = " ".join(result.stderr.split())
    assert warning.startswith("warning: pointer moved; announcement not sent: ")
    assert "not sent: bad sasl.mechanism;" in warning
    assert warning.endswith("API instances will follow on their next poll (within 7 s)")
    assert "rolled back from v2 to v1" in result.stdout
    assert current(redis_url, tmp_path / "models", model) == 1


def test_a_models_directory_that_cannot_be_read_is_named_not_redis(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "models").write_text("not a directory")
    result = CliRunner().invoke(app, ["models", "rollback", "contextual"], env=env)
    assert result.exit_code == 2, result.output
    assert "Redis" not in result.output
    assert f"Not a directory: {tmp_path / 'models' / 'contextual'}" in result.output


def test_history_skips_a_malformed_entry(
    tmp_path: Path, redis_url: str, env: dict[str, str], model: str
) -> None:
    publish(redis_url, tmp_path / "models", model, 2)

    async def spoil() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            key = keys.model_promotions(model)
            await client.linsert(key, "BEFORE", (await client.lindex(key, -1)), b"{not json")
            await client.rpush(key, b'{"action":"promote","version":"x","previous":1,"at_ms":1}')
        finally:
            await client.aclose()

    asyncio.run(spoil())
    result = CliRunner().invoke(app, ["models", "history", model], env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    assert result.stdout.count("promote") == 2
