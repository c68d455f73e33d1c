"""gradconf: a multi-framework gradient conformance harness (see README.md and SPEC.md)."""
__version__ = "0.1.0"
