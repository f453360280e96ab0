"""A Python process holding the same data as its twins: a big dict, strings and
bytearrays from a seeded generator. Prints "ready", then holds the data until its
stdin closes (the benchmark ended or died)."""
import random
import sys


def build(seed: int, size_mib: int) -> dict:
    rng = random.Random(seed)
    blobs = [bytearray(rng.randbytes(256 * 1024)) for _ in range(size_mib * 2)]
    table = {f"user:{i}": (i, f"name-{rng.getrandbits(40):x}", rng.random()) for i in range(size_mib * 6000)}
    return {"blobs": blobs, "table": table}


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    data = build(42, size_mib)
    print("ready", len(data["blobs"]), flush=True)
    sys.stdin.read()


main()
