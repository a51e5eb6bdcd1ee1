"""Counting distinct keys in at most 16 bytes a key: an open-addressing set of 64-bit key hashes in one array.

A Python ``set`` of ints costs about 70 bytes a key (1 M keys = 70 MB); this table stores the 8-byte hash
in an ``array('Q')`` with linear probing. It starts empty and, when more than 3/4 of its
slots are taken, is rebuilt with exactly twice as many slots as keys: the load stays between 1/2 and 3/4,
so the storage holds 8 / load = 10.7 to 16 bytes a distinct key at every size, also right after a growth
(each growth multiplies the slots by 1.5; while it copies, the old and new arrays briefly coexist: about
27 bytes a key for that moment). Two different keys share a 64-bit blake2b hash with probability
about n^2 / 2^65 (1e-8 for a million keys), which would count one duplicate too many; the writer never uses
the fingerprint to decide what to write.

A hash's slot comes from its top 32 bits: the low bits are fixed within a shard (``hash % shard_count``).
"""

from __future__ import annotations

from array import array
from itertools import chain

MAX_LOAD_NUMERATOR, MAX_LOAD_DENOMINATOR = 3, 4  # grow when more than 3/4 of the slots are taken
SLOTS_PER_KEY_AFTER_GROWTH = 2  # a growth leaves the table half full: 16 bytes a key
_ZERO_SLOT = array("Q", [0])


class KeyFingerprints:
    def __init__(self) -> None:
        self._slots = array("Q")
        self._capacity = 0
        self._grow_above = 0  # grow when ``distinct`` exceeds this
        self.distinct = 0

    def add(self, key_hash: int) -> bool:
        """Record a 64-bit key hash; True when it was new, False for a duplicate."""
        fingerprint = key_hash or 1  # 0 marks an empty slot
        slots, capacity = self._slots, self._capacity
        if capacity:
            index = (fingerprint >> 32) % capacity
            while True:
                current = slots[index]
                if current == fingerprint:
                    return False
                if not current:
                    break
                index += 1
                if index == capacity:
                    index = 0
            if self.distinct < self._grow_above:
                slots[index] = fingerprint
                self.distinct += 1
                return True
        # A new key that would take the load over 3/4 (or the first key): grow, then place it.
        self.distinct += 1
        self._rebuild(SLOTS_PER_KEY_AFTER_GROWTH * self.distinct, fingerprint)
        return True

    def _rebuild(self, capacity: int, new_fingerprint: int) -> None:
        """Move every fingerprint, and the new one, into a fresh table of ``capacity`` slots."""
        old = self._slots
        slots = _ZERO_SLOT * capacity  # exact size (``array("Q", bytes(n))`` would over-allocate by 1/16)
        for fingerprint in chain(old, (new_fingerprint,)):
            if fingerprint:
                index = (fingerprint >> 32) % capacity
                while slots[index]:
                    index += 1
                    if index == capacity:
                        index = 0
                slots[index] = fingerprint
        self._slots, self._capacity = slots, capacity
        self._grow_above = capacity * MAX_LOAD_NUMERATOR // MAX_LOAD_DENOMINATOR

    @property
    def nbytes(self) -> int:
        """Bytes of the slot storage (``8 * slots``)."""
        return self._slots.itemsize * len(self._slots)
