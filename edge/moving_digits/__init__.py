"""MovingDigits-AV: real handwritten digits (MNIST) on a card moved by a verb, seen by a moving
head camera, and the digit spoken (FSDD); procedural stand-ins when no data root is present.
numpy + OpenCV only (PyAV only to write session files), so `run_live.py --demo` can render it."""
from edge.moving_digits.config import NuisanceLevels, load_config
from edge.moving_digits.render import NOUNS, VERBS, Clip, render_clip
from edge.moving_digits.session import Segment, Session, render_session, write_session
from edge.moving_digits.sources import DigitSources, load_sources
from edge.moving_digits.splits import DEFAULT_SPLITS, Split, make_split

__all__ = ["NuisanceLevels", "load_config", "NOUNS", "VERBS", "Clip", "render_clip", "Segment", "Session",
           "render_session", "write_session", "DigitSources", "load_sources",
           "DEFAULT_SPLITS", "Split", "make_split"]
