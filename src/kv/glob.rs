//! Redis's glob patterns, for KEYS and SCAN MATCH (to be written).
