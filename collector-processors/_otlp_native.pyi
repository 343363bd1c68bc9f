"""Types of the C converter (``_otlp_native.c``): OTLP trace requests -> one ClickHouse Native block."""

from collections.abc import Sequence

COLUMNS: tuple[tuple[str, str], ...]

def convert(payloads: Sequence[bytes], /) -> tuple[bytes, int, int]: ...
def convert_each(payloads: Sequence[bytes], /) -> tuple[bytes, int, int, list[tuple[int, tuple[str, ...]] | str]]: ...
