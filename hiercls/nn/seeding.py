"""Seeding torch's global generator for the length of a fit.

Weight initialization, shuffling, augmentation and the pick of a frozen backbone's view
all draw from torch's global generator, one per process and shared by every thread.
:func:`seeded` seeds it and restores it after. Two fits in two threads would interleave
their draws; they take turns under :data:`GLOBAL_GENERATOR_LOCK`, the lock of that one
generator (the process-wide state it guards is torch's, not hiercls'). Fits in separate
processes (joblib, dask) never wait for each other.
"""

import contextlib
import threading

import torch

#: Held while a fit draws from torch's global generator (reentrant: a fit may nest).
GLOBAL_GENERATOR_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed):
    """Hold :data:`GLOBAL_GENERATOR_LOCK`; with a seed, under torch's global generator
    (and CUDA's) seeded with it, restored after.

    Examples
    --------
    >>> import torch
    >>> from hiercls.nn.seeding import seeded
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> with seeded(0):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    with GLOBAL_GENERATOR_LOCK:
        if seed is None:
            yield
            return
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
