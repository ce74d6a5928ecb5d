"""Enhancer ``compress``: the backend compresses data itself.

Offload uses it so that compressed bytes, not raw ones, cross the wire to
the store. Implement `ICompress` (one method) or subclass `Compress` to get
`supports` for free.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from zope.interface import Interface, implementer, taggedValue

from pieceworks.protocols._contract import restates

__all__ = ["Compress", "ICompress"]


class ICompress(Interface):
    """The backend can compress chunks before they leave it."""

    taggedValue("capability", "compress")

    def compression_codecs() -> Sequence[str]:
        """Return the codecs the backend can apply, best first.

        Names are those of `pieceworks.protocols.chunks` (``zstd``,
        ``zlib``); ``none`` is implied and need not be listed.
        """


@restates
@implementer(ICompress)
class Compress(abc.ABC):
    """Base class for `ICompress`: implement `compression_codecs`."""

    @abc.abstractmethod
    def compression_codecs(self) -> Sequence[str]: ...

    def supports(self, codec: str) -> bool:
        """Whether the backend can produce `codec` (``none`` always)."""
        return codec == "none" or codec in self.compression_codecs()
