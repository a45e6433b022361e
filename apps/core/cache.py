"""Django's Redis cache, reusing one Redis client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` for every operation, and building
one (its response-callback tables) costs more than the round trip itself on the resolve
path. The client is safe to share; the pool underneath already is.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ReusingRedisCacheClient(RedisCacheClient):
    """Keeps the `redis.Redis` built for each pool instead of building one per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(
                connection_pool=self._get_connection_pool(write)
            )
        return client


class RedisCache(DjangoRedisCache):
    """Django's Redis cache backend with reused clients."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
