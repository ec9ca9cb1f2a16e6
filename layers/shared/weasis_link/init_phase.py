"""Garbage collection paused while a function initialises, and the heap frozen after it.

Importing Powertools, pydantic, boto3 and the configuration creates hundreds of thousands of objects that live as
long as the execution environment: the cyclic collector would traverse them again and again during init (tens of
milliseconds of a cold start) and at every later full collection. Importing this module first pauses the
collector; `done()` moves everything init created into the permanent generation (gc.freeze) and resumes it, so
collections only ever look at what requests create."""

from __future__ import annotations

import gc

gc.disable()


def done() -> None:
    """The function is initialised: freeze what init created, collect again from now on."""
    gc.freeze()
    gc.enable()
