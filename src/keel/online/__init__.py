"""The online store: the latest feature values per entity, for low-latency reads.

Three backends, chosen by URI: ``memory://`` (the reference, in process), ``sqlite:///path/online.db`` (the
embedded default) and ``redis://host:port/db`` (``pip install 'keel[redis]'``). All keep the semantics
described on :class:`OnlineStore` and pass one conformance suite.
"""

from keel.online._materialize import MaterializeResult, materialize_view, materialize_views
from keel.online._memory import MemoryOnlineStore
from keel.online._push import PUSH_TARGETS, PushResult, push_rows
from keel.online._redis import RedisOnlineStore
from keel.online._service import OnlineFeatures, OnlineFeatureService
from keel.online._sqlite import SqliteOnlineStore
from keel.online._store import OnlineRead, OnlineStore

__all__ = [
    "PUSH_TARGETS",
    "MaterializeResult",
    "MemoryOnlineStore",
    "OnlineFeatureService",
    "OnlineFeatures",
    "OnlineRead",
    "OnlineStore",
    "PushResult",
    "RedisOnlineStore",
    "SqliteOnlineStore",
    "materialize_view",
    "materialize_views",
    "push_rows",
]
