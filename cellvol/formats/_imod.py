"""IMOD's mark in an MRC header, which says whether mode 0 bytes are signed.

MRC2014 defines mode 0 as signed bytes; IMOD wrote unsigned bytes before version 4.2.23 and
marks which it means with a stamp and a flag in the header's extra bytes. The reader
(``_mrc``) and the exporter (``_export``) both need them.
"""

from typing import Final

__all__ = ["IMOD_FIELDS_OFFSET", "IMOD_SIGNED_BYTES", "IMOD_STAMP"]

#: Where the stamp (then the flags, both 32-bit integers) sit in the 1024-byte header.
IMOD_FIELDS_OFFSET: Final = 152
#: "IMOD" as a 32-bit integer.
IMOD_STAMP: Final = 1146047817
#: Bit 0 of the flags: mode 0 bytes are signed.
IMOD_SIGNED_BYTES: Final = 1
