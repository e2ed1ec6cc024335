"""The out-of-the-box demo: a local Autumna stand-in with bundled leads, and local sinks."""
