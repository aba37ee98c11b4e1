// Filled in by the paper tests.
