//! Parsing the command line's flags, the way every subcommand does it.

use super::error::CliError;
use crate::raft::message::NodeId;
use crate::redis::membership;

/// A usage error: the message is printed with a pointer to --help.
pub(super) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Parsed `--flag value` / `--flag=value` options, plus what follows them.
pub(super) struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    pub(super) rest: Vec<String>,
}

impl Flags {
    /// `with_value` and `switches` list the flags this subcommand knows;
    /// `stop_at_positional` lets `cli` pass its command through untouched.
    pub(super) fn parse(
        args: &[String],
        with_value: &[&str],
        switches: &[&str],
        stop_at_positional: bool,
    ) -> Result<Flags, CliError> {
        let mut flags = Flags {
            values: Vec::new(),
            switches: Vec::new(),
            rest: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if !arg.starts_with('-') || arg == "-" {
                if stop_at_positional {
                    flags.rest = args[i - 1..].to_vec();
                    break;
                }
                return Err(usage(format!("unexpected argument {arg:?}")));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if switches.contains(&name.as_str()) {
                if inline.is_some() {
                    return Err(usage(format!("{name} takes no value")));
                }
                flags.switches.push(name);
            } else if with_value.contains(&name.as_str()) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| usage(format!("{name} needs a value")))?;
                        i += 1;
                        v.clone()
                    }
                };
                flags.values.push((name, value));
            } else {
                return Err(usage(format!("unknown option {name}")));
            }
        }
        Ok(flags)
    }

    pub(super) fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An on/off option.
    pub(super) fn switch_value(&self, name: &str, default: bool) -> Result<bool, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some("on") | Some("true") | Some("yes") => Ok(true),
            Some("off") | Some("false") | Some("no") => Ok(false),
            Some(other) => Err(usage(format!("{name} expects on or off, got {other:?}"))),
        }
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, CliError> {
        self.get(name)
            .ok_or_else(|| usage(format!("missing required option {name}")))
    }

    pub(super) fn number<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| usage(format!("{name} expects a number, got {v:?}"))),
        }
    }
}

impl Flags {
    /// A size in bytes: a number, optionally followed by `kb`, `mb` or `gb`
    /// (powers of 1024; any case), as in `--client-output-limit 64mb`.
    pub(super) fn size(&self, name: &str, default: usize) -> Result<usize, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_size(v)
                .ok_or_else(|| usage(format!("{name} expects a size such as 64mb, got {v:?}"))),
        }
    }
}

/// `123`, `64kb`, `64mb`, `1gb` (any case) in bytes; `None` if malformed or
/// too large.
fn parse_size(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.len().checked_sub(2).map(|i| lower.split_at(i)) {
        Some((d, "kb")) => (d, 1 << 10),
        Some((d, "mb")) => (d, 1 << 20),
        Some((d, "gb")) => (d, 1 << 30),
        _ => (lower.as_str(), 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

pub(super) fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env).try_init();
}

pub(super) fn parse_node_id(text: &str, what: &str) -> Result<NodeId, CliError> {
    membership::parse_node_id(text)
        .ok_or_else(|| usage(format!("{what} must be a positive integer, got {text:?}")))
}

/// `HOST:PORT`, checked as RAFT.NODE ADD checks the addresses it is given
/// (except that port 0 is allowed here: it means any free port).
pub(super) fn check_addr(addr: &str, flag: &str) -> Result<(), CliError> {
    match membership::host_port(addr) {
        Some(_) => Ok(()),
        None => Err(usage(format!("{flag} expects HOST:PORT, got {addr:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("64kb"), Some(64 * 1024));
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        assert_eq!(parse_size("1gb"), Some(1 << 30));
        for bad in [
            "",
            "mb",
            "-1",
            "1.5mb",
            "12 mb",
            "1tb",
            "99999999999999999999gb",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
