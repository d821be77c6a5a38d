from __future__ import annotations

import redis

from .redis_server import RedisServer


def test_redis_server_is_real_and_keeps_data_across_restart(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url)
    client.set("kept", "yes")
    info = client.info("server")
    assert info["redis_version"]  # a real server answers INFO
    client.close()
    own_redis.restart()
    client = redis.Redis.from_url(own_redis.url)
    assert client.get("kept") == b"yes"
    client.close()


def test_redis_url_starts_empty(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.close()
