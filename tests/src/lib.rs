//! Scenarios across the real binaries (atServer with atDirectory) live here once the atServer exists.
//! The directory's own wire tests are in `directory/tests/`, next to the binary they start.
