"""WAVECAST_REDIS_SENTINELS and WAVECAST_REDIS_SENTINEL_MASTER: parsed, refused with a
message naming the variable, and handed to every Redis client the same way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.sentinel import SentinelConnectionPool

from app.runtime import connect_redis
from app.settings import Settings, parse_host_port


def settings(**env: str) -> Settings:
    return Settings(**env)  # type: ignore[arg-type]


def test_sentinels_are_host_port_pairs() -> None:
    s = settings(
        redis_sentinels="redis-a:26379, redis-b:26380 ,[::1]:26381",
        redis_sentinel_master="wavecast",
    )
    assert s.sentinel_addresses == [("redis-a", 26379), ("redis-b", 26380), ("::1", 26381)]
    assert not s.uses_embedded_redis


def test_a_json_list_is_accepted_too() -> None:
    s = settings(redis_sentinels='["a:1", "b:2"]', redis_sentinel_master="m")
    assert s.sentinel_addresses == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("entry", ["redis-a", "redis-a:", ":26379", "a:b", "a:0", "a:65536"])
def test_a_bad_entry_is_refused_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match="WAVECAST_REDIS_SENTINELS") as caught:
        settings(redis_sentinels=f"ok:1,{entry}", redis_sentinel_master="m")
    message = str(caught.value)
    assert "WAVECAST_REDIS_SENTINELS" in message
    assert repr(entry) in message
    assert "host:port" in message


def test_sentinels_need_the_master_name_and_the_other_way_round() -> None:
    with pytest.raises(ValueError, match="WAVECAST_REDIS_SENTINEL_MASTER is empty"):
        settings(redis_sentinels="a:1")
    with pytest.raises(ValueError, match="WAVECAST_REDIS_SENTINELS is empty"):
        settings(redis_sentinel_master="wavecast")


@pytest.mark.parametrize("url", ["rediss://:pw@primary:6380/1", "unix:///run/redis.sock"])
def test_a_tls_or_socket_url_is_refused_with_sentinels(url: str) -> None:
    with pytest.raises(ValueError, match="must be a redis:// URL"):
        settings(redis_sentinels="a:1", redis_sentinel_master="m", redis_url=url)
    # Without sentinels the same URLs are the client's own business.
    assert settings(redis_url=url).redis_url == url


async def test_no_sentinels_is_the_plain_url() -> None:
    s = settings(redis_url="redis://127.0.0.1:6379/3")
    assert s.sentinel_addresses == []
    client = connect_redis(s)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6379, 3)
        assert kwargs["socket_timeout"] == 5
    finally:
        await client.aclose()


@given(
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    port=st.integers(min_value=1, max_value=65535),
)
def test_host_port_round_trips(host: str, port: int) -> None:
    assert parse_host_port(f"{host}:{port}") == (host, port)


async def test_every_client_finds_the_primary_through_the_sentinels() -> None:
    s = settings(
        redis_sentinels="127.0.0.1:26379,127.0.0.1:26380",
        redis_sentinel_master="wavecast",
        redis_url="redis://:s3cret@ignored/4",
    )
    client = connect_redis(s)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "wavecast"
        assert pool.connection_kwargs["db"] == 4
        assert pool.connection_kwargs["password"] == "s3cret"
        # Fails fast: an unreachable primary is an error, never a hang.
        assert pool.connection_kwargs["socket_timeout"] == 5
        sentinels = pool.sentinel_manager.sentinels
        assert [c.connection_pool.connection_kwargs["port"] for c in sentinels] == [26379, 26380]
        assert all(c.connection_pool.connection_kwargs["socket_timeout"] == 1 for c in sentinels)
    finally:
        await client.aclose()
