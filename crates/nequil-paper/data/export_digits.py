#!/usr/bin/env python3
"""Exports scikit-learn's handwritten digits to digits.npz, the real data of fig5-deep-linear.

The data: the test set (1 797 images) of the UCI "Optical Recognition of Handwritten Digits"
data set (E. Alpaydin, C. Kaynak, 1998), as scikit-learn ships it (`sklearn.datasets.load_digits`).
Each image is 8 × 8 integer pixels in 0..16, each label a digit 0..9.

Written with np.savez_compressed (numpy stamps every member with the same fixed date, so a
re-export is byte-identical):
  images  uint8 [1797, 64]  pixels in 0..16, row-major 8 × 8
  labels  uint8 [1797]      digits 0..9

Run once (needs numpy and scikit-learn from the package index):
  python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy
  /tmp/skl/bin/python crates/nequil-paper/data/export_digits.py
"""
import os
import sys

import numpy as np
from sklearn.datasets import load_digits


def main() -> int:
    d = load_digits()
    images = d.data.astype(np.float64)
    if images.shape != (1797, 64) or images.min() < 0 or images.max() > 16:
        print(f"unexpected digits data: shape {images.shape}, range {images.min()}..{images.max()}")
        return 1
    if not np.array_equal(images, np.round(images)):
        print("unexpected digits data: pixels are not integers")
        return 1
    labels = d.target
    if labels.shape != (1797,) or labels.min() < 0 or labels.max() > 9:
        print(f"unexpected digits labels: shape {labels.shape}, range {labels.min()}..{labels.max()}")
        return 1
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")
    np.savez_compressed(out, images=images.astype(np.uint8), labels=labels.astype(np.uint8))
    print(f"wrote {out}: {images.shape[0]} images, pixel sum {int(images.sum())}, "
          f"{os.path.getsize(out)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
