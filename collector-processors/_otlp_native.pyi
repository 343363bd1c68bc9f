"""Types of the C converter (``_otlp_native.c``): OTLP trace requests -> one ClickHouse Native block."""

import mmap
from collections.abc import Sequence

COLUMNS: tuple[tuple[str, str], ...]

# a payload: bytes or any object with a buffer (bytearray, memoryview, an mmap of a spool file)
_Payload = bytes | bytearray | memoryview | mmap.mmap

def convert(payloads: Sequence[_Payload], /) -> tuple[bytes, int, int]: ...
def convert_into(payloads: Sequence[_Payload], fd: int, /) -> tuple[int, int, int]: ...
def convert_each(
    payloads: Sequence[_Payload], /
) -> tuple[bytes, int, int, list[tuple[int, tuple[str, ...]] | str]]: ...
