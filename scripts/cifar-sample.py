#!/usr/bin/env python3
"""Writes a CIFAR-10-format sample (random pixels, labels cycling through the
classes) for trying the CIFAR presets without the data set:

    scripts/cifar-sample.py DIR [RECORDS_PER_FILE]   # default 10

DIR gets data_batch_1.bin … data_batch_5.bin and test_batch.bin of
RECORDS_PER_FILE records each (1 label byte + 3072 pixel bytes). Seeded:
the same bytes every time.
"""
import os
import random
import sys

d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
os.makedirs(d, exist_ok=True)
r = random.Random(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, name), "wb") as f:
        for i in range(n):
            f.write(bytes([i % 10]) + r.randbytes(3072))
