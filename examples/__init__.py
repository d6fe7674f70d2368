"""Examples from docs/frameworks.md: each file is imported or run by a test (tests/examples/)."""
