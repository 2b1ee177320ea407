"""Keep one GPU architecture's machine code in a CUDA shared library, zeroing the others.

The ``mlx-cuda-13`` wheel (90 MB) is too large to travel to the lent GPU machine (64 MiB with
the working tree); its ``libmlx.so`` holds each kernel as PTX and as cubins for seven
architectures. Zeroing every payload but the one for ``--sm`` (same file size, same headers,
so the loader finds the kept cubin where it was) lets ``xz`` shrink the wheel's files to about
22 MB. The result runs only on that architecture (90: H100 and H200).

    python bench/gpu/keep_arch.py mlx/lib/libmlx.so --sm 90
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
ELF_KIND = 2  # an entry's kind: 1 is PTX, 2 a cubin


def keep_arch(data: bytearray, sm: int) -> tuple[int, int]:
    """Zero every fatbin entry's payload except the cubins for ``sm``, in place; return the
    bytes kept and the bytes zeroed.

    >>> def entry(sm):  # header: kind, version, header size, payload size, ..., arch at 28
    ...     return struct.pack("<HHIQ", ELF_KIND, 0, 32, 4) + bytes(12) + struct.pack("<I", sm)
    >>> body = entry(80) + b"abcd" + entry(90) + b"wxyz"
    >>> blob = bytearray(FATBIN_MAGIC + struct.pack("<HHQ", 1, 16, len(body)) + body)
    >>> keep_arch(blob, 90), bytes(blob[48:52]), bytes(blob[-4:])
    ((4, 4), b'\\x00\\x00\\x00\\x00', b'wxyz')
    """
    kept = zeroed = 0
    pos = 0
    while (start := data.find(FATBIN_MAGIC, pos)) >= 0:
        _, header_size, body_size = struct.unpack_from("<HHQ", data, start + 4)
        if header_size != 16:
            pos = start + 4
            continue
        entry, end = start + 16, start + 16 + body_size
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            body = entry + entry_header
            if kind == ELF_KIND and arch == sm:
                kept += payload
            else:
                data[body : body + payload] = bytes(payload)
                zeroed += payload
            entry = body + payload
        pos = end
    return kept, zeroed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--sm", type=int, default=90, help="architecture to keep (default 90)")
    args = parser.parse_args()
    data = bytearray(args.library.read_bytes())
    kept, zeroed = keep_arch(data, args.sm)
    if kept == 0:
        raise SystemExit(f"error: {args.library} holds no sm_{args.sm} cubin")
    args.library.write_bytes(data)
    kept_mb, zeroed_mb = kept / 1e6, zeroed / 1e6
    print(f"{args.library}: kept {kept_mb:.1f} MB of sm_{args.sm} code, zeroed {zeroed_mb:.1f} MB")


if __name__ == "__main__":
    main()
