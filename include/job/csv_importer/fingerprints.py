"""Counting distinct keys in 16 bytes a key: an open-addressing set of 64-bit key hashes in one array.

A Python ``set`` of ints costs about 70 bytes a key (1 M keys = 70 MB); this table stores the 8-byte hash
in an ``array('Q')`` kept at most half full. Two different keys share a 64-bit blake2b hash with
probability about n^2 / 2^65 (1e-8 for a million keys), which would count one duplicate too many; the
writer never uses the fingerprint to decide what to write.
"""

from __future__ import annotations

from array import array

_EMPTY = 0


class KeyFingerprints:
    def __init__(self, capacity: int = 1 << 16) -> None:
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self.distinct = 0

    def add(self, key_hash: int) -> bool:
        """Record a 64-bit key hash; True when it was new, False for a duplicate."""
        fingerprint = key_hash or 1
        slots, mask = self._slots, self._mask
        index = fingerprint & mask
        while True:
            current = slots[index]
            if current == _EMPTY:
                slots[index] = fingerprint
                self.distinct += 1
                if self.distinct * 2 > mask:
                    self._grow()
                return True
            if current == fingerprint:
                return False
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        capacity = (self._mask + 1) * 2
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        slots, mask = self._slots, self._mask
        for fingerprint in old:
            if fingerprint != _EMPTY:
                index = fingerprint & mask
                while slots[index] != _EMPTY:
                    index = (index + 1) & mask
                slots[index] = fingerprint

    @property
    def nbytes(self) -> int:
        return self._slots.itemsize * len(self._slots)
