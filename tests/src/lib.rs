//! Cross-crate integration and interoperability tests live in `tests/`.
