"""From CSV records to DynamoDB items: the table's key schema, header checks, typing, item size, key hash.

Items are built as low-level AttributeValue dicts (``{"S": ...}``, ``{"N": ...}``, ``{"BOOL": ...}``) so the
writer hands them to BatchWriteItem without the boto3 resource layer's serialisation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from csv_importer.exit_codes import BadInput, TransientFailure, UsageProblem
from csv_importer.settings import ColumnType, EmptyCells, Lineage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

# Item sizes follow "DynamoDB item sizes and formats"
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html): attribute
# names and string values by their UTF-8 bytes, a number by (significant digits + 1) // 2 + 1 bytes, BOOL and
# NULL 1 byte. The 400 KB limit and the 1 KB write unit are binary: 1 KB = 1024 bytes.
MAX_ITEM_BYTES = 400 * 1024
WRITE_UNIT_BYTES = 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
KEY_SEPARATOR = "\x1f"
RESERVED_ATTRIBUTES = ("importId", "sourceKey", "importedAt")
# The lineage attributes each ``lineage`` choice stamps (all of them stay reserved column names either way).
LINEAGE_ATTRIBUTES: Mapping[Lineage, tuple[str, ...]] = {
    "all": ("importId", "sourceKey", "importedAt"),
    "import_id": ("importId",),
}
# DynamoDB numbers: up to 38 significant digits, magnitude 1E-130 .. 9.99..9E+125.
MAX_NUMBER_DIGITS = 38
MIN_NUMBER_EXPONENT, MAX_NUMBER_EXPONENT = -130, 125
# Their syntax, ASCII only: optional sign, digits with an optional fraction, optional exponent. Decimal alone
# would also take "1_000", non-ASCII digits ("١٢"), NaN and Infinity.
_NUMBER_SYNTAX = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMBER_PADDING = " \t"  # spaces and tabs around a number are trimmed (as after "a, b" separators); no other
_NOT_FINITE_WORDS = frozenset({"nan", "snan", "inf", "infinity"})
# Normalising at 38 digits with Inexact trapped refuses a 39th significant digit instead of rounding it away.
_NUMBER_CONTEXT = Context(
    prec=MAX_NUMBER_DIGITS, Emin=-999999, Emax=999999, traps=[Inexact, InvalidOperation, Overflow]
)
_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no"})


class RowRejected(Exception):
    """A data row that is not written; the reason goes to the rejected-rows file."""


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    type: str  # "S" or "N" (the table's declared type)


@dataclass(frozen=True)
class KeySchema:
    partition: KeyAttribute
    sort: KeyAttribute | None = None

    @property
    def attributes(self) -> tuple[KeyAttribute, ...]:
        return (self.partition,) if self.sort is None else (self.partition, self.sort)


def describe_key_schema(dynamodb: DynamoDBClient, table: str) -> KeySchema:
    """Read the table's key schema with DescribeTable. Missing table -> :class:`BadInput` naming it."""
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise BadInput(f"DynamoDB table {table!r} does not exist") from None
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in {"AccessDeniedException", "UnrecognizedClientException"} or status == 403:
            code = "AccessDeniedException" if code == "403" else code
            raise BadInput(f"DynamoDB table {table!r}: DescribeTable denied ({code})") from None
        raise TransientFailure(f"DynamoDB table {table!r}: DescribeTable failed: {code}: {error}") from None
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    roles = {k["KeyType"]: k["AttributeName"] for k in description["KeySchema"]}
    attributes: dict[str, KeyAttribute] = {}
    for role in ("HASH", "RANGE"):
        if role not in roles:
            continue
        name = roles[role]
        if types[name] not in ("S", "N"):
            raise BadInput(
                f"DynamoDB table {table!r}: key {name!r} has type {types[name]}; only S and N keys can be "
                "imported from CSV"
            )
        attributes[role] = KeyAttribute(name, types[name])
    return KeySchema(partition=attributes["HASH"], sort=attributes.get("RANGE"))


def write_request_units(item_bytes: int) -> int:
    """DynamoDB's write request units for writing one item of ``item_bytes``: one per 1 KB, rounded up, at least 1."""
    return max(1, -(-item_bytes // WRITE_UNIT_BYTES))


def lineage_stamps(lineage: Lineage, *, import_id: str, source_uri: str, imported_at: str) -> dict[str, str]:
    """The lineage attributes (name -> string value) the ``lineage`` setting stamps on every item."""
    values = {"importId": import_id, "sourceKey": source_uri, "importedAt": imported_at}
    return {name: values[name] for name in LINEAGE_ATTRIBUTES[lineage]}


def _shown(text: str) -> str:
    """A cell for a rejection reason: quoted, and cut short when long (the whole row is in ``raw_row``)."""
    return repr(text) if len(text) <= 64 else f"{text[:40]!r}... ({len(text)} characters)"


def parse_number(text: str) -> tuple[str, int]:
    """Return DynamoDB's canonical text for a number and its stored size in bytes (without the name).

    The size is DynamoDB's documented rule: leading and trailing zeroes trimmed, 1 byte per two significant
    digits (rounded up), plus 1 byte; zero has no significant digit left and takes the 1 byte.

    Spaces and tabs around the number are trimmed; the rest must be ASCII ``[+-]digits[.digits][e[+-]digits]``
    (``.5`` and ``5.`` too). Nothing is rounded: a value DynamoDB could not store exactly is refused.

    :raises ValueError: not such a number, or not within DynamoDB's precision (38 significant digits) and range
        (magnitude 1E-130 to 9.99...E+125).
    """
    candidate = text.strip(_NUMBER_PADDING)
    if not _NUMBER_SYNTAX.fullmatch(candidate):
        if candidate.lstrip("+-").lower() in _NOT_FINITE_WORDS:
            raise ValueError(f"{_shown(text)} is not a finite number (DynamoDB has no NaN or Infinity)")
        raise ValueError(
            f"{_shown(text)} is not a number (ASCII digits with optional sign, fraction and exponent)"
        )
    try:
        value = Decimal(candidate)
    except ArithmeticError:  # an exponent beyond what Decimal can represent
        value = Decimal("NaN")
    if not value.is_finite():
        raise ValueError(f"number {_shown(text)} is outside DynamoDB's range (1E-130 to 9.9E+125)")
    if value.is_zero():
        return "0", 1
    if not MIN_NUMBER_EXPONENT <= value.adjusted() <= MAX_NUMBER_EXPONENT:
        raise ValueError(f"number {_shown(text)} is outside DynamoDB's range (1E-130 to 9.9E+125)")
    try:
        normal = value.normalize(_NUMBER_CONTEXT)
    except Inexact:
        raise ValueError(
            f"number {_shown(text)} has more than {MAX_NUMBER_DIGITS} significant digits"
        ) from None
    digits = len(normal.as_tuple().digits)
    canonical = str(normal) if abs(normal.adjusted()) > 30 else format(normal, "f")
    return canonical, (digits + 1) // 2 + 1


def canonical_key_part(value: str, key_type: str) -> str:
    """The canonical text of one key attribute's value, as the job writes it and the verifier reads it back.

    Strings are kept as they are (no trimming); numbers become DynamoDB's canonical text at its 38 significant
    digits (``1.50`` and ``+1.5e0`` are the key ``1.5``).

    :raises ValueError: a number key DynamoDB cannot store exactly (see :func:`parse_number`).
    """
    return parse_number(value)[0] if key_type == "N" else value


def canonical_key(parts: Sequence[str]) -> str:
    """One key's canonical text from its attributes' canonical parts (partition, then sort)."""
    return KEY_SEPARATOR.join(parts)


def key_hash(key_text: str) -> int:
    """The 64-bit blake2b hash of a canonical key: it picks the shard (``% shard_count``) and is the
    duplicate-key fingerprint (the job's and the verifier's)."""
    digest = hashlib.blake2b(key_text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"{_shown(text)} is not a boolean (true/false, 1/0, yes/no)")


def _text_bytes(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8"))


class RowConverter:
    """Checks the header once, then turns each record into an item (or raises :class:`RowRejected`)."""

    def __init__(
        self,
        *,
        header: Sequence[str],
        key_schema: KeySchema,
        column_types: Mapping[str, ColumnType],
        stamps: Mapping[str, str],
        source_uri: str,
        table: str,
        empty_cells: EmptyCells = "keep",
    ) -> None:
        names = [name.strip() for name in header]
        self.empty_cells = empty_cells
        self.names = names
        self.column_count = len(names)
        problems = self._header_problems(names, key_schema, column_types)
        if problems:
            raise BadInput(f"{source_uri}: header {problems}")
        for key in key_schema.attributes:
            declared = column_types.get(key.name)
            if declared is not None and declared != key.type:
                raise UsageProblem(
                    f"column_types declares key {key.name!r} as {declared} but table {table!r} declares it "
                    f"{key.type}"
                )
        self.key_attributes = key_schema.attributes
        self.key_positions = [names.index(key.name) for key in key_schema.attributes]
        types: dict[str, str] = {**column_types, **{key.name: key.type for key in key_schema.attributes}}
        self._columns = [(name, len(name.encode("utf-8")), types.get(name, "S")) for name in names]
        self._stamp_items = {name: {"S": value} for name, value in stamps.items()}
        self._stamp_size = sum(_text_bytes(name) + _text_bytes(value) for name, value in stamps.items())

    @staticmethod
    def _header_problems(
        names: list[str], key_schema: KeySchema, column_types: Mapping[str, ColumnType]
    ) -> str:
        if any(not name for name in names):
            return f"has an empty column name (columns: {names})"
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            return f"repeats column(s) {duplicates}"
        reserved = [name for name in names if name in RESERVED_ATTRIBUTES]
        if reserved:
            return f"uses reserved column(s) {reserved} (the importer sets {list(RESERVED_ATTRIBUTES)})"
        missing = [key.name for key in key_schema.attributes if key.name not in names]
        if missing:
            return f"lacks the table's key column(s) {missing} (columns: {names})"
        unknown = sorted(set(column_types) - set(names))
        if unknown:
            return f"lacks column(s) {unknown} named in column_types"
        return ""

    def key_of(self, fields: list[str]) -> tuple[str, int]:
        """Canonical key text and its 64-bit blake2b hash; :class:`RowRejected` when the row has no usable key.

        The text is the writer's de-duplication key; the hash picks the shard (``% shard_count``) and is the
        duplicate-key fingerprint (8 bytes a key).
        """
        if len(fields) != self.column_count:
            raise RowRejected(f"expected {self.column_count} fields, got {len(fields)}")
        parts = []
        for index, (key, position) in enumerate(zip(self.key_attributes, self.key_positions, strict=True)):
            value = fields[position]
            if value == "":
                raise RowRejected(f"key {key.name!r} is empty")
            limit = MAX_PARTITION_KEY_BYTES if index == 0 else MAX_SORT_KEY_BYTES
            if key.type == "S" and len(value) * 4 > limit and _text_bytes(value) > limit:
                raise RowRejected(
                    f"key {key.name!r} is {_text_bytes(value)} bytes, over DynamoDB's {limit}-byte limit"
                )
            try:
                parts.append(canonical_key_part(value, key.type))
            except ValueError as error:
                raise RowRejected(f"key {key.name!r}: {error}") from None
        key_text = canonical_key(parts)
        return key_text, key_hash(key_text)

    def convert(self, fields: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
        """The item (AttributeValue dicts) and its DynamoDB size in bytes, for a row :meth:`key_of` accepted."""
        item = dict(self._stamp_items)
        size = self._stamp_size
        for (name, name_bytes, column_type), value in zip(self._columns, fields, strict=True):
            if value == "":
                # Key cells are never empty here (key_of rejects them). keep: "" for string columns only.
                if self.empty_cells == "null":
                    item[name] = {"NULL": True}
                    size += name_bytes + 1
                elif self.empty_cells == "keep" and column_type == "S":
                    item[name] = {"S": ""}
                    size += name_bytes
                continue
            if column_type == "S":
                item[name] = {"S": value}
                size += name_bytes + _text_bytes(value)
            elif column_type == "N":
                try:
                    number, number_bytes = parse_number(value)
                except ValueError as error:
                    raise RowRejected(f"column {name!r}: {error}") from None
                item[name] = {"N": number}
                size += name_bytes + number_bytes
            else:
                try:
                    item[name] = {"BOOL": parse_bool(value)}
                except ValueError as error:
                    raise RowRejected(f"column {name!r}: {error}") from None
                size += name_bytes + 1
        if size > MAX_ITEM_BYTES:
            raise RowRejected(f"item is {size} bytes, over DynamoDB's {MAX_ITEM_BYTES}-byte item limit")
        return item, size
