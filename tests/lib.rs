//! Cross-component tests live under `tests/`; this library is empty.
