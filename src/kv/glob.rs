//! Redis's glob patterns, for KEYS and SCAN MATCH (a placeholder).

/// Whether `text` matches `pattern` (placeholder: `*` and literal only).
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    pattern == b"*" || pattern == text
}
