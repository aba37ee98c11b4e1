//! The one bit of JSON the command line writes by hand (`bench --json`,
//! `cli status --json`): strings, escaped.

use std::fmt::Write;

/// `s` as a JSON string: quotes, backslashes and control characters
/// escaped.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(quote("TIMEOUT"), "\"TIMEOUT\"");
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
