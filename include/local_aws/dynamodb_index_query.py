"""A faster moto Query on a global secondary index for one partition-key value (moto pinned to 5.2.5).

moto's ``Table.query`` on an index compares every item of the table through ``DynamoType`` (a ``Decimal`` or
string cast per comparison) and sorts the matches with the same casts, on every page. Counting one import's
items (``Query(Select=COUNT)`` on the ``importSlot`` GSI, paginated at 1 MB) is then quadratic: a million-row
import took about 25 minutes to verify locally. This patch keeps moto's own query code and semantics and only
hands it the matching items, found by comparing the raw string value, and sorts them by values cast once.
It applies to equality on a string or binary index partition key; every other query is moto's, unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from moto.dynamodb.models import table as table_models

log = logging.getLogger(__name__)

_Table = table_models.Table
_PRIVATE_METHODS = ("query", "all_items", "sorted_items", "_generate_attr_to_sort_by")
_RAW_COMPARABLE_TYPES = frozenset({"S", "B"})
_installed = False


class _MatchingItemsView:
    """The table as moto's query sees it, restricted to the items whose index partition key matches."""

    def __init__(self, table: Any, matching: list[Any]) -> None:
        self._table = table
        self._matching = matching

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        return list(self._matching)

    def sorted_items(
        self, hash_key_attrs: list[str], range_key_attrs: list[str | None], items: list[Any]
    ) -> list[Any]:
        names = self._table._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
        items.sort(key=lambda item: tuple(item.attrs[name].cast_value for name in names))
        return items


def _index_partition_value(
    table: Any, index_name: str | None, kwargs: dict[str, Any]
) -> tuple[str, Any] | None:
    """``(attribute, DynamoType)`` when this query takes the fast path, else None."""
    if not index_name or kwargs.get("range_key_conditions") or kwargs.get("filter_kwargs_present"):
        return None
    conditions = kwargs.get("hash_key_conditions") or []
    index = next((i for i in table.global_indexes if i.name == index_name), None)
    if index is None or len(conditions) != 1:
        return None
    hash_names = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"]
    name, value = conditions[0]
    if hash_names != [name] or value.type not in _RAW_COMPARABLE_TYPES:
        return None
    return name, value


def _matching_items(table: Any, name: str, value: Any) -> list[Any]:
    wanted_type, wanted = value.type, value.value
    matching = []
    for entry in table.items.values():
        for item in entry.values() if table.range_key_attr else (entry,):
            attribute = item.attrs.get(name)
            if attribute is not None and attribute.value == wanted and attribute.type == wanted_type:
                matching.append(item)
    return matching


def install_index_query_patch() -> None:
    """Replace ``Table.query`` once per process; refuse if moto no longer has the names it relies on."""
    global _installed
    if _installed:
        return
    missing = [name for name in _PRIVATE_METHODS if not callable(getattr(_Table, name, None))]
    if missing:
        raise RuntimeError(f"moto's dynamodb Table lacks {missing}: the index query patch needs updating")
    original = _Table.query

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[7] if len(args) > 7 else kwargs.get("index_name")
        range_comparison = args[1] if len(args) > 1 else kwargs.get("range_comparison")
        known = {
            "hash_key",
            "range_comparison",
            "range_objs",
            "limit",
            "exclusive_start_key",
            "scan_index_forward",
            "projection_expressions",
            "index_name",
            "consistent_read",
            "filter_expression",
            "hash_key_conditions",
            "range_key_conditions",
        }
        probe = dict(kwargs, filter_kwargs_present=any(name not in known for name in kwargs))
        target = None if range_comparison else _index_partition_value(self, index_name, probe)
        if target is None:
            return original(self, *args, **kwargs)
        view = _MatchingItemsView(self, _matching_items(self, *target))
        return original(view, *args, **kwargs)

    _Table.query = query
    _installed = True
    log.debug("moto dynamodb Table.query: index partition-key fast path installed")
