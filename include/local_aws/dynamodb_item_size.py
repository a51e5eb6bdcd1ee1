"""A linear item-size check for moto's DynamoDB items (moto pinned to 5.2.5).

moto builds every written item through ``LimitedSizeDict.__setitem__``, which re-sums the size of every attribute
already set before adding the next one: building an item of n attributes costs O(n²) size computations. On this
project's items (10 attributes) that was about half of the endpoint's CPU per BatchWriteItem. This patch builds
the item's attributes the same way (one ``DynamoType`` per value), then checks the item's total size once against
moto's own limit and raises moto's own ``ItemSizeTooLarge``: the same items are accepted and refused, with the same
error. Sizes only grow as attributes are added, so checking the total once is the same as checking every prefix.
Later in-place changes (UpdateItem) still go through moto's ``LimitedSizeDict.__setitem__``, unchanged.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models import dynamo_type

log = logging.getLogger(__name__)

# moto's LimitedSizeDict refuses an item above this many bytes (its comment: AWS's limit lies between 409 and 410 KB).
MOTO_ITEM_SIZE_LIMIT = 405000
_installed = False


def item_size_patch_problems() -> list[str]:
    """What changed in moto that this patch relies on; empty when all is as in moto 5.2.5."""
    problems = []
    limited = getattr(dynamo_type, "LimitedSizeDict", None)
    item = getattr(dynamo_type, "Item", None)
    if limited is None or item is None:
        return ["moto.dynamodb.models.dynamo_type lacks LimitedSizeDict or Item"]
    if str(MOTO_ITEM_SIZE_LIMIT) not in inspect.getsource(limited.__setitem__):
        problems.append(
            f"LimitedSizeDict.__setitem__ no longer refuses items above {MOTO_ITEM_SIZE_LIMIT} bytes"
        )
    if list(inspect.signature(item.__init__).parameters) != ["self", "hash_key", "range_key", "attrs"]:
        problems.append("Item.__init__ no longer takes (hash_key, range_key, attrs)")
    if not callable(getattr(item, "size", None)):
        problems.append("Item has no size()")
    return problems


def _item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    self.hash_key = hash_key
    self.range_key = range_key
    attributes = dynamo_type.LimitedSizeDict.__new__(dynamo_type.LimitedSizeDict)
    dict.__init__(attributes, {key: dynamo_type.DynamoType(value) for key, value in attrs.items()})
    self.attrs = attributes
    if self.size() > MOTO_ITEM_SIZE_LIMIT:
        raise ItemSizeTooLarge


def install_item_size_patch() -> None:
    """Replace ``Item.__init__`` once per process; refuse, naming what changed, if moto moved."""
    global _installed
    if _installed:
        return
    problems = item_size_patch_problems()
    if problems:
        raise RuntimeError(f"the DynamoDB item size patch needs updating: {'; '.join(problems)}")
    dynamo_type.Item.__init__ = _item_init
    _installed = True
    log.debug("moto dynamodb Item: linear size check installed")
