"""DynamoDB's ConsumedCapacity for BatchWriteItem and BatchGetItem, as AWS computes it (moto pinned to 5.2.5).

moto answers every BatchWriteItem with ``CapacityUnits: 1.0`` per table whatever it wrote, and every BatchGetItem
with one unit per key asked for, whatever the items' sizes or the read's consistency, and returns both even when
the caller did not ask. The pipeline reports what an import costs from these numbers, so the endpoint computes
them by DynamoDB's documented rules (developerguide "Capacity unit consumption", "Item sizes and formats"):

* a write: one write request unit per started KB of the item (minimum 1), plus, for every global secondary index
  the item appears in, one per started KB of its index entry (the table's and the index's key attributes plus
  the projected ones, plus 100 bytes of overhead);
* a read: one read request unit per started 4 KB of the item (minimum 1: a key that is not there costs the same),
  half of it when eventually consistent;
* item size: the UTF-8 bytes of each attribute name plus its value (strings in UTF-8, numbers about one byte per
  two significant digits plus one, booleans and nulls one byte).

``ConsumedCapacity`` is returned only when the request says ``ReturnConsumedCapacity`` TOTAL or INDEXES.
"""

from __future__ import annotations

import inspect
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from moto.dynamodb import responses

_installed = False
_originals: dict[str, Any] = {}
INDEX_ENTRY_OVERHEAD_BYTES = 100


def _value_bytes(value: dict[str, Any]) -> int:
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        try:
            number = Decimal(str(data))
        except InvalidOperation:
            return len(str(data))
        digits = 0 if number.is_zero() else len(number.normalize().as_tuple().digits)
        return (digits + 1) // 2 + 1  # one byte per two significant digits, plus one (zero: no digit)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "B":
        return len(data) if isinstance(data, bytes) else len(str(data)) * 3 // 4
    if kind in ("SS", "NS", "BS"):
        return sum(_value_bytes({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(_value_bytes(member) + 1 for member in data)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + _value_bytes(member) + 1 for name, member in data.items())
    return len(str(data))


def item_bytes(item: dict[str, dict[str, Any]], names: set[str] | None = None) -> int:
    """An item's size by DynamoDB's rules (only the attributes in ``names`` when given)."""
    return sum(
        len(name.encode("utf-8")) + _value_bytes(value)
        for name, value in item.items()
        if names is None or name in names
    )


def _table_key_names(table: Any) -> set[str]:
    return {schema["AttributeName"] for schema in table.schema}


def _index_entry_bytes(table: Any, index: Any, item: dict[str, dict[str, Any]]) -> int | None:
    """Bytes of ``item``'s entry in a GSI, None when the item lacks the index's keys (it is not in the index)."""
    index_keys = {schema["AttributeName"] for schema in index.schema}
    if not index_keys <= set(item):
        return None
    projection = index.projection or {}
    kind = projection.get("ProjectionType", "ALL")
    if kind == "ALL":
        names = set(item)
    else:
        names = _table_key_names(table) | index_keys | set(projection.get("NonKeyAttributes", []))
    return item_bytes(item, names) + INDEX_ENTRY_OVERHEAD_BYTES


def _write_units(handler: Any) -> list[dict[str, Any]]:
    consumed = []
    for table_name, requests in handler.body.get("RequestItems", {}).items():
        table = handler.dynamodb_backend.get_table(table_name)
        units, indexes = 0.0, {index.name: 0.0 for index in table.global_indexes}
        for request in requests:
            item = (request.get("PutRequest") or {}).get("Item")
            if item is None:  # a delete costs as much as the item it removes; the pipeline never deletes
                units += 1
                continue
            units += max(1, math.ceil(item_bytes(item) / 1024))
            for index in table.global_indexes:
                entry = _index_entry_bytes(table, index, item)
                if entry is not None:
                    indexes[index.name] += max(1, math.ceil(entry / 1024))
        total = units + sum(indexes.values())
        entry: dict[str, Any] = {"TableName": table_name, "CapacityUnits": total}
        if handler.body.get("ReturnConsumedCapacity") == "INDEXES":
            entry["Table"] = {"CapacityUnits": units}
            if indexes:
                entry["GlobalSecondaryIndexes"] = {name: {"CapacityUnits": v} for name, v in indexes.items()}
        consumed.append(entry)
    return consumed


def _read_units(handler: Any, unprocessed: dict[str, Any]) -> list[dict[str, Any]]:
    consumed = []
    for table_name, request in handler.body.get("RequestItems", {}).items():
        left = {repr(key) for key in unprocessed.get(table_name, {}).get("Keys", [])}
        factor = 1.0 if request.get("ConsistentRead") else 0.5
        units = 0.0
        for key in request.get("Keys", []):
            if repr(key) in left:
                continue
            item = handler.dynamodb_backend.get_item(table_name, key)
            size = item_bytes(item.to_json()["Attributes"]) if item is not None else 0
            units += max(1, math.ceil(size / 4096)) * factor
        entry: dict[str, Any] = {"TableName": table_name, "CapacityUnits": units}
        if handler.body.get("ReturnConsumedCapacity") == "INDEXES":
            entry["Table"] = {"CapacityUnits": units}
        consumed.append(entry)
    return consumed


def consumed_capacity_patch_problems() -> list[str]:
    """What changed in moto that this patch relies on; empty when all is as in moto 5.2.5."""
    handler = getattr(responses, "DynamoHandler", None)
    if handler is None:
        return ["moto.dynamodb.responses has no DynamoHandler"]
    problems = []
    for name, marker in (
        ("batch_write_item", '"CapacityUnits": 1.0'),
        ("batch_get_item", '"CapacityUnits": len(keys)'),
    ):
        method = _originals.get(name) or getattr(handler, name, None)
        if method is None or marker not in inspect.getsource(method):
            problems.append(f"DynamoHandler.{name} no longer answers {marker}")
    return problems


def install_consumed_capacity_patch() -> None:
    """Wrap BatchWriteItem and BatchGetItem once per process; refuse, naming what changed, if moto moved."""
    global _installed
    if _installed:
        return
    problems = consumed_capacity_patch_problems()
    if problems:
        raise RuntimeError(f"moto changed, the ConsumedCapacity patch no longer fits: {'; '.join(problems)}")
    handler = responses.DynamoHandler
    original_write, original_get = handler.batch_write_item, handler.batch_get_item
    _originals.update(batch_write_item=original_write, batch_get_item=original_get)

    def batch_write_item(self: Any) -> Any:
        # Computed before the write: the same item sizes DynamoDB charges for, whatever was there before.
        consumed = _write_units(self) if self.body.get("ReturnConsumedCapacity", "NONE") != "NONE" else None
        result = original_write(self)
        body = result.result
        body.pop("ConsumedCapacity", None)
        if consumed is not None:
            body["ConsumedCapacity"] = consumed
        return result

    def batch_get_item(self: Any) -> Any:
        result = original_get(self)
        body = result.result
        body.pop("ConsumedCapacity", None)
        if self.body.get("ReturnConsumedCapacity", "NONE") != "NONE":
            body["ConsumedCapacity"] = _read_units(self, body.get("UnprocessedKeys") or {})
        return result

    handler.batch_write_item = batch_write_item  # type: ignore[method-assign]
    handler.batch_get_item = batch_get_item  # type: ignore[method-assign]
    _installed = True
