"""The ``keel`` package format: fitted scikit-learn objects as one JSON tree plus one block of array bytes.

Loading never unpickles and never calls a function named by the blob: it rebuilds plain Python values
natively, numpy arrays from the data block, and objects of *allowlisted classes* only (a class, never a function,
on the allowlist of :mod:`keel.models._trust`, or named by the caller in ``trusted_types``), the way ``skops``
does; every name in the blob's type table is checked before anything is built. Loading is one JSON parse and
one ``np.frombuffer`` per array instead of ``skops``' one zip member and one ``.npy`` header per array.

Layout::

    header   32 bytes, little endian: magic b"KEELPKG\\0", version (u32), 0 (u32),
             length of the tree (u64), length of the data block (u64)
    tree     JSON (UTF-8): {"types": [[module, qualname], ...], "root": node}
    padding  zero bytes up to a multiple of 64 from the start of the blob
    data     every array's bytes, each starting at a multiple of 64 within the block

A node is ``null``, a boolean, an integer (64-bit), a finite float or a string, standing for itself, or a list
whose first item names its kind (``"l"`` list, ``"D"`` dict with string keys, ``"a"`` array, ``"o"`` object,
...; see ``_Encoder``). Containers, arrays and objects carry an id, so a value met twice (or in a cycle) is
written once and referenced (``["r", id]``): identity survives the round trip, as with pickle.

Encoding is deterministic (the same objects give the same bytes; sets are written sorted) and refuses what it
cannot represent faithfully (functions, untrusted or local classes, objects rebuilt by a function, ...) with
:class:`Unsupported`, so the caller can fall back to another format instead of writing something wrong.

The format lives in three modules: :mod:`~keel.models._keel_layout` (header, padding, dtypes),
:mod:`~keel.models._keel_encode` and :mod:`~keel.models._keel_decode`, which mirror each other.
"""

from keel.models._keel_decode import decode, type_names
from keel.models._keel_encode import encode
from keel.models._keel_layout import MAGIC, VERSION, Unsupported, pack, unpack

__all__ = ["MAGIC", "VERSION", "Unsupported", "decode", "encode", "pack", "type_names", "unpack"]
