"""A zero-latency AWS stand-in: botocore ``before-send`` handlers that answer at once, without HTTP.

Used to measure client-side CPU and memory without a server's cost or latency in the picture.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self.body


def _response(request: Any, body: bytes, headers: dict[str, str] | None = None) -> AWSResponse:
    return AWSResponse(request.url, 200, {"x-amzn-RequestId": "stand-in", **(headers or {})}, _RawBody(body))


def answer_dynamodb(client: Any, table: str, *, on_batch: Callable[[bytes], None] | None = None) -> None:
    """DescribeTable (key ``id`` S) and BatchWriteItem (nothing unprocessed) answered instantly."""
    description = json.dumps(
        {
            "Table": {
                "TableName": table,
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "TableStatus": "ACTIVE",
            }
        }
    ).encode()

    def answer(request: Any, **_kwargs: Any) -> AWSResponse:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if target.endswith("DescribeTable"):
            return _response(request, description)
        if on_batch is not None:
            on_batch(request.body)
        return _response(request, b'{"UnprocessedItems":{}}')

    client.meta.events.register("before-send.dynamodb", answer)


def answer_s3(client: Any) -> None:
    """PutObject (manifest, rejected rows) answered instantly."""
    client.meta.events.register(
        "before-send.s3", lambda request, **_kw: _response(request, b"", {"ETag": '"0"'})
    )


STAND_IN_URL = "http://stand-in.invalid"


@contextmanager
def stand_in_environment() -> Iterator[None]:
    """Environment under which ``csv_importer.cli.make_clients`` builds clients for the stand-in."""
    values = {
        "AWS_ENDPOINT_URL": STAND_IN_URL,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "stand-in",
        "AWS_SECRET_ACCESS_KEY": "stand-in",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
