"""The durable instance store: DICOM files on disk plus a SQLite index."""

from radserve.server.store.batch import (
    BatchOutcome,
    FailedInstance,
    IngestBatch,
    StoredInstance,
)
from radserve.server.store.errors import (
    DuplicateInstanceError,
    InstanceNotFoundError,
    InstanceRejectedError,
    QueryError,
    StoreError,
    StoreFullError,
)
from radserve.server.store.files import (
    read_received,
)
from radserve.server.store.index import (
    IndexRows,
    QueryLevel,
    index_columns,
    index_rows,
)
from radserve.server.store.instances import (
    CommitListener,
    InstanceStore,
    encode_dataset,
)
from radserve.server.store.query import (
    InstanceQuery,
)

__all__ = [
    "BatchOutcome",
    "CommitListener",
    "DuplicateInstanceError",
    "FailedInstance",
    "IndexRows",
    "IngestBatch",
    "InstanceNotFoundError",
    "InstanceQuery",
    "InstanceRejectedError",
    "InstanceStore",
    "QueryError",
    "QueryLevel",
    "StoreError",
    "StoreFullError",
    "StoredInstance",
    "encode_dataset",
    "index_columns",
    "index_rows",
    "read_received",
]
