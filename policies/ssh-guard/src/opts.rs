//! Command-line option parsing in the getopt style most tools share, so each rule can ask
//! "is `-r` among the options?" and "which arguments are operands?" without its own loop.

use crate::expand::Arg;

/// How one program takes its options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spec {
    /// Short options that take a value (`-t DIR` or `-tDIR`).
    pub short: &'static str,
    /// Short options whose value, if any, must be attached (`-i.bak`).
    pub attached: &'static str,
    /// Long options that take a value (`--target-directory DIR` or `=DIR`).
    pub long: &'static [&'static str],
    /// Options end at the first operand (wrappers: what follows is the wrapped command).
    pub posix: bool,
}

impl Spec {
    pub fn with_long(self, long: &'static [&'static str]) -> Spec {
        Spec { long, ..self }
    }
}

/// Parsed arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Options as written (`-r`, `--recursive`), each with its value if it took one.
    pub opts: Vec<(String, Option<Arg>)>,
    pub operands: Vec<Arg>,
    /// With [`Spec::posix`]: everything from the first operand on.
    pub rest: Vec<Arg>,
}

impl Parsed {
    pub fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(o, _)| names.contains(&o.as_str()))
    }

    pub fn value(&self, names: &[&str]) -> Option<&Arg> {
        self.opts
            .iter()
            .rev()
            .find(|(o, _)| names.contains(&o.as_str()))
            .and_then(|(_, v)| v.as_ref())
    }

    pub fn values<'a>(&'a self, names: &'a [&'a str]) -> impl Iterator<Item = &'a Arg> + 'a {
        self.opts
            .iter()
            .filter(move |(o, _)| names.contains(&o.as_str()))
            .filter_map(|(_, v)| v.as_ref())
    }
}

pub fn parse(args: &[Arg], spec: Spec) -> Parsed {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let t = a.text();
        i += 1;
        if t == "--" && !a.dynamic {
            if spec.posix {
                p.rest.extend_from_slice(&args[i..]);
            } else {
                p.operands.extend_from_slice(&args[i..]);
            }
            break;
        }
        if let Some(long) = t.strip_prefix("--").filter(|_| !a.dynamic) {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(Arg::plain(v))),
                None => (t.to_string(), None),
            };
            let value = if value.is_none() && spec.long.contains(&name.as_str()) {
                i += 1;
                args.get(i - 1).cloned()
            } else {
                value
            };
            p.opts.push((name, value));
            continue;
        }
        if t.len() > 1 && t.starts_with('-') && !a.dynamic {
            let chars: Vec<char> = t[1..].chars().collect();
            for (k, c) in chars.iter().enumerate() {
                let rest: String = chars[k + 1..].iter().collect();
                if spec.short.contains(*c) {
                    let value = if rest.is_empty() {
                        i += 1;
                        args.get(i - 1).cloned()
                    } else {
                        Some(Arg::plain(&rest))
                    };
                    p.opts.push((format!("-{c}"), value));
                    break;
                }
                if spec.attached.contains(*c) {
                    let value = (!rest.is_empty()).then(|| Arg::plain(&rest));
                    p.opts.push((format!("-{c}"), value));
                    break;
                }
                p.opts.push((format!("-{c}"), None));
            }
            continue;
        }
        if spec.posix {
            p.rest.extend_from_slice(&args[i - 1..]);
            break;
        }
        p.operands.push(a.clone());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Arg> {
        s.split(' ').map(Arg::plain).collect()
    }

    #[test]
    fn clusters_values_and_double_dash() {
        let spec = Spec {
            short: "t",
            long: &["--target-directory"],
            ..Spec::default()
        };
        let p = parse(&args("-rf -tdir a --target-directory x -- -b"), spec);
        assert!(p.has(&["-r"]) && p.has(&["-f"]));
        assert_eq!(p.value(&["-t"]).map(Arg::text), Some("dir"));
        assert_eq!(p.value(&["--target-directory"]).map(Arg::text), Some("x"));
        let ops: Vec<_> = p.operands.iter().map(Arg::text).collect();
        assert_eq!(ops, ["a", "-b"]);
    }

    #[test]
    fn posix_stops_at_the_first_operand() {
        let spec = Spec {
            short: "n",
            posix: true,
            ..Spec::default()
        };
        let p = parse(&args("-n 5 rm -rf /"), spec);
        let rest: Vec<_> = p.rest.iter().map(Arg::text).collect();
        assert_eq!(rest, ["rm", "-rf", "/"]);
        let p = parse(
            &args("-i.bak -e x f"),
            Spec {
                attached: "i",
                short: "e",
                ..Spec::default()
            },
        );
        assert_eq!(p.value(&["-i"]).map(Arg::text), Some(".bak"));
        assert_eq!(p.operands.len(), 1);
    }
}
