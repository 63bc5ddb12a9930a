//! Word expansion as far as a policy can take it: variables assigned earlier in the line,
//! `~`, brace expansion, word splitting, and the output of trivial substitutions such as
//! `$(echo rm)`. What is only known at run time becomes alternatives that over-approximate it:
//! an unknown `$x` may be empty, any name (`*`), or a space that splits the word.

use crate::ast::{Cmd, List, Param, ParamOp, Part, Word};
use crate::escapes::decode_escapes;
use crate::paths::{HOMES, resolve};
use std::collections::HashMap;

/// More alternatives than this for one word and the word counts as unknowable.
const MAX_ALTS: usize = 48;
/// Brace expansion producing more words than this makes the word unknowable.
const MAX_BRACE_WORDS: usize = 256;

// Unquoted `{`, `,` and `}` (brace expansion applies to them only), and a split point from an
// unquoted expansion. Private-use code points never typed in a command line.
const OPEN: char = '\u{E000}';
const COMMA: char = '\u{E001}';
const CLOSE: char = '\u{E002}';
const SPLIT: char = '\u{E003}';

/// What the guard knows at one point of a line: candidate working directories and variables.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Absolute candidates for the working directory.
    pub cwd: Vec<String>,
    /// Absolute candidates for `~` (changed by `HOME=...`).
    pub homes: Vec<String>,
    pub vars: HashMap<String, Val>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// One of these values.
    Known(Vec<String>),
    Unknown,
}

impl Ctx {
    /// An `exec` request runs in the login directory; an interactive line runs wherever earlier
    /// lines `cd`'d to, which the guard cannot see, so `/` is tried as well.
    pub fn new(interactive: bool) -> Ctx {
        let homes: Vec<String> = HOMES.iter().map(|h| h.to_string()).collect();
        let mut cwd = homes.clone();
        if interactive {
            cwd.push("/".to_string());
        }
        let mut vars = HashMap::new();
        vars.insert("IFS".to_string(), Val::Known(vec![" \t\n".to_string()]));
        Ctx { cwd, homes, vars }
    }

    fn param(&self, name: &str) -> Val {
        match name {
            "HOME" => Val::Known(vec!["~".to_string()]),
            "PWD" => Val::Known(self.cwd.clone()),
            _ => self.vars.get(name).cloned().unwrap_or(Val::Unknown),
        }
    }

    /// Absolute candidates for a path argument.
    pub fn resolve(&self, path: &str) -> Vec<String> {
        resolve(path, &self.cwd, &self.homes)
    }
}

/// One expanded argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// What the argument may be (usually exactly one string). Globs are left unexpanded.
    pub alts: Vec<String>,
    /// Some part is only known at run time.
    pub dynamic: bool,
    /// Nothing about it is known (no literal text, or too many alternatives).
    pub opaque: bool,
    /// How to show a dynamic argument in messages (its source, such as `$HOME/x`).
    pub raw: Option<String>,
}

impl Arg {
    pub fn plain(s: &str) -> Arg {
        Arg {
            alts: vec![s.to_string()],
            dynamic: false,
            opaque: false,
            raw: None,
        }
    }

    /// The argument for messages: its text, or its source when only known at run time.
    pub fn shown(&self) -> String {
        match &self.raw {
            Some(r) => r.clone(),
            None if self.text().is_empty() || self.text().contains(char::is_whitespace) => {
                format!("'{}'", self.text())
            }
            None => self.text().to_string(),
        }
    }

    /// The first alternative, for option parsing and messages.
    pub fn text(&self) -> &str {
        self.alts.first().map_or("", String::as_str)
    }

    /// The argument when it is exactly known.
    pub fn known(&self) -> Option<&str> {
        (!self.dynamic && self.alts.len() == 1).then(|| self.text())
    }
}

/// Expand a word into the arguments it becomes.
pub fn expand(word: &Word, ctx: &Ctx) -> Vec<Arg> {
    // Most words are plain text: skip the machinery.
    if let [Part::Lit(t, quoted)] = word.parts.as_slice()
        && (*quoted || !t.contains(['{', '}']))
    {
        return vec![Arg::plain(t)];
    }
    let mut alts = vec![String::new()];
    let mut dynamic = false;
    let mut literal = false;
    let mut overflow = false;
    for part in &word.parts {
        let choices: Vec<String> = match part {
            Part::Lit(t, quoted) => {
                literal |= !t.is_empty();
                vec![if *quoted { t.clone() } else { mark_braces(t) }]
            }
            Part::Tilde(user) => {
                literal = true;
                vec![format!("~{user}")]
            }
            Part::Param(p) => {
                let (vals, known) = param_values(p, ctx);
                dynamic |= !known;
                vals
            }
            Part::Subst(body, quoted) => match subst_value(body, ctx) {
                Some(v) if *quoted => vec![v],
                Some(v) => vec![v.replace(|c: char| c.is_whitespace(), &SPLIT.to_string())],
                None => {
                    dynamic = true;
                    unknown(*quoted)
                }
            },
            // A number: no `/`, glob or space can come of it.
            Part::Arith(..) => {
                dynamic = true;
                vec!["0".to_string()]
            }
            Part::ProcSubst(_) => {
                literal = true;
                vec!["/dev/fd/63".to_string()]
            }
        };
        let mut next = Vec::new();
        for a in &alts {
            for c in &choices {
                let s = format!("{a}{c}");
                if !next.contains(&s) {
                    next.push(s);
                }
            }
        }
        if next.len() > MAX_ALTS {
            next.truncate(MAX_ALTS);
            overflow = true;
        }
        alts = next;
    }
    // Word splitting, then brace expansion, of every alternative.
    let mut per_alt: Vec<Vec<String>> = Vec::new();
    for a in &alts {
        let mut words = Vec::new();
        let pieces: Vec<&str> = if a.contains(SPLIT) {
            a.split(SPLIT).filter(|p| !p.is_empty()).collect()
        } else {
            vec![a.as_str()]
        };
        for p in pieces {
            if !brace(p, &mut words) {
                overflow = true;
            }
        }
        per_alt.push(words);
    }
    let opaque = overflow || (dynamic && !literal);
    let raw = (dynamic || overflow).then(|| source(word));
    let make = |alts: Vec<String>| Arg {
        alts,
        dynamic: dynamic || overflow,
        opaque,
        raw: raw.clone(),
    };
    let n = per_alt.first().map_or(0, Vec::len);
    if per_alt.iter().all(|w| w.len() == n) {
        (0..n)
            .map(|k| make(per_alt.iter().map(|w| w[k].clone()).collect()))
            .collect()
    } else {
        // Alternatives split differently: every piece may be an argument of its own, and no
        // argument's position is known (the program name among them).
        per_alt
            .into_iter()
            .flatten()
            .map(|w| Arg {
                alts: vec![w],
                dynamic: true,
                opaque: true,
                raw: raw.clone(),
            })
            .collect()
    }
}

/// A word roughly as written, for messages.
pub fn source(word: &Word) -> String {
    let mut s = String::new();
    for p in &word.parts {
        match p {
            Part::Lit(t, _) => s.push_str(t),
            Part::Tilde(u) => {
                s.push('~');
                s.push_str(u);
            }
            Part::Param(Param {
                name,
                op: ParamOp::Plain,
                ..
            }) => {
                s.push('$');
                s.push_str(name);
            }
            Part::Param(p) => s.push_str(&format!("${{{}...}}", p.name)),
            Part::Subst(l, _) => s.push_str(&format!("$({})", list_source(l))),
            Part::ProcSubst(l) => s.push_str(&format!("<({})", list_source(l))),
            Part::Arith(..) => s.push_str("$((...))"),
        }
    }
    s
}

/// A list roughly as written, for messages.
pub fn list_source(l: &List) -> String {
    let pipelines: Vec<String> = l
        .items
        .iter()
        .map(|(p, _)| {
            let stages: Vec<String> = p
                .stages
                .iter()
                .map(|c| match c {
                    Cmd::Simple(s) => s.words.iter().map(source).collect::<Vec<_>>().join(" "),
                    _ => "...".to_string(),
                })
                .collect();
            stages.join(" | ")
        })
        .collect();
    pipelines.join("; ")
}

/// What an unknown expansion may be: empty, any name, or (unquoted) a word break.
fn unknown(quoted: bool) -> Vec<String> {
    let mut v = vec![String::new(), "*".to_string()];
    if !quoted {
        v.push(SPLIT.to_string());
    }
    v
}

/// A parameter's possible values, and whether they are all known.
fn param_values(p: &Param, ctx: &Ctx) -> (Vec<String>, bool) {
    let split = |vals: Vec<String>| -> Vec<String> {
        if p.quoted {
            vals
        } else {
            vals.into_iter()
                .map(|v| v.replace(|c: char| c.is_whitespace(), &SPLIT.to_string()))
                .collect()
        }
    };
    let sub = |w: &Word| -> (Vec<String>, bool) {
        let args = expand(w, ctx);
        let known = args.iter().all(|a| !a.dynamic);
        let joined = if args.len() == 1 {
            args[0].alts.clone()
        } else {
            vec![
                args.iter()
                    .map(|a| a.text().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        };
        (joined, known)
    };
    match (&p.op, ctx.param(&p.name)) {
        (ParamOp::Plain, Val::Known(v)) => (split(v), true),
        (ParamOp::Plain, Val::Unknown) => (unknown(p.quoted), false),
        (ParamOp::Default(w), val) => {
            let (mut vals, mut known) = sub(w);
            match val {
                Val::Known(v) => vals.extend(v),
                Val::Unknown => {
                    vals.extend(unknown(p.quoted));
                    known = false;
                }
            }
            (split(vals), known)
        }
        (ParamOp::Alternative(w), _) => {
            let (mut vals, known) = sub(w);
            vals.push(String::new());
            (split(vals), known)
        }
        (ParamOp::Other(_), _) => (unknown(p.quoted), false),
    }
}

/// The output of a substitution simple enough to know without running it: `echo` / `printf`
/// of known text, `which X` / `command -v X` (taken as `X`), `pwd`.
pub fn subst_value(body: &List, ctx: &Ctx) -> Option<String> {
    let [(p, _)] = body.items.as_slice() else {
        return None;
    };
    let [Cmd::Simple(s)] = p.stages.as_slice() else {
        return None;
    };
    if !s.redirs.is_empty() {
        return None;
    }
    let mut args = Vec::new();
    for w in &s.words {
        for a in expand(w, ctx) {
            args.push(a.known()?.to_string());
        }
    }
    let (prog, rest) = args.split_first()?;
    let out = match (prog.as_str(), rest) {
        ("echo", _) => echo_text(rest),
        ("printf", [fmt, more @ ..]) => printf_text(fmt, more),
        ("which" | "type", [x]) => x.clone(),
        ("command", [flag, x]) if flag == "-v" || flag == "-V" => x.clone(),
        ("pwd", []) if ctx.cwd.len() == 1 => ctx.cwd[0].clone(),
        _ => return None,
    };
    Some(out.trim_end_matches('\n').to_string())
}

/// What `echo ARGS` prints (`-n`, `-e` and `-E` understood).
pub fn echo_text(args: &[String]) -> String {
    let mut escapes = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| "neE".contains(c)) {
            escapes = a.contains('e') || (escapes && !a.contains('E'));
            i += 1;
        } else {
            break;
        }
    }
    let text = args[i..].join(" ");
    if escapes { decode_escapes(&text) } else { text }
}

/// What `printf FMT ARGS` prints, roughly: escapes decoded, `%s` / `%b` / `%c` filled in order.
pub fn printf_text(fmt: &str, args: &[String]) -> String {
    let fmt = decode_escapes(fmt);
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        while chars.peek().is_some_and(|c| "-+ #0123456789.".contains(*c)) {
            chars.next();
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('b') => out.push_str(&decode_escapes(next.next().map_or("", |s| s))),
            Some(_) => out.push_str(next.next().map_or("", |s| s)),
            None => out.push('%'),
        }
    }
    out
}

fn mark_braces(t: &str) -> String {
    t.chars()
        .map(|c| match c {
            '{' => OPEN,
            ',' => COMMA,
            '}' => CLOSE,
            c => c,
        })
        .collect()
}

fn unmark(t: &str) -> String {
    t.chars()
        .map(|c| match c {
            OPEN => '{',
            COMMA => ',',
            CLOSE => '}',
            c => c,
        })
        .collect()
}

/// Brace-expand `s` (marked) into `out`; false when it would produce too many words.
fn brace(s: &str, out: &mut Vec<String>) -> bool {
    if out.len() >= MAX_BRACE_WORDS {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    for open in (0..chars.len()).filter(|&i| chars[i] == OPEN) {
        let mut depth = 0;
        let mut commas = Vec::new();
        let mut close = None;
        for (j, &c) in chars.iter().enumerate().skip(open) {
            match c {
                OPEN => depth += 1,
                CLOSE => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                COMMA if depth == 1 => commas.push(j),
                _ => {}
            }
        }
        let Some(close) = close else { continue };
        let prefix: String = chars[..open].iter().collect();
        let suffix: String = chars[close + 1..].iter().collect();
        let inner: String = chars[open + 1..close].iter().collect();
        let choices: Vec<String> = if commas.is_empty() {
            match sequence(&unmark(&inner)) {
                Some(seq) => seq,
                None => continue,
            }
        } else {
            let mut v = Vec::new();
            let mut start = open + 1;
            for &k in commas.iter().chain(std::iter::once(&close)) {
                v.push(chars[start..k].iter().collect());
                start = k + 1;
            }
            v
        };
        for c in choices {
            if !brace(&format!("{prefix}{c}{suffix}"), out) {
                return false;
            }
        }
        return true;
    }
    out.push(unmark(s));
    true
}

/// `{1..5}`, `{a..e}` (steps ignored): the items, or `None` when it is not a sequence.
fn sequence(inner: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = inner.split("..").collect();
    let (a, b) = match parts.as_slice() {
        [a, b] | [a, b, _] => (*a, *b),
        _ => return None,
    };
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        let (lo, hi) = (x.min(y), x.max(y));
        if hi - lo >= MAX_BRACE_WORDS as i64 {
            return Some(vec!["*".to_string()]);
        }
        return Some((lo..=hi).map(|n| n.to_string()).collect());
    }
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(x), None, Some(y), None) if x.is_ascii_alphabetic() && y.is_ascii_alphabetic() => {
            let (lo, hi) = (x.min(y), x.max(y));
            Some((lo..=hi).map(|c| c.to_string()).collect())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::parse;

    /// The arguments of the first simple command of `line`.
    fn args(line: &str, ctx: &Ctx) -> Vec<Arg> {
        let list = parse(line, false).unwrap_or_default();
        let Some((p, _)) = list.items.first() else {
            return Vec::new();
        };
        let Some(Cmd::Simple(s)) = p.stages.first() else {
            return Vec::new();
        };
        s.words.iter().flat_map(|w| expand(w, ctx)).collect()
    }

    fn texts(line: &str) -> Vec<String> {
        args(line, &Ctx::new(false))
            .iter()
            .map(|a| a.text().to_string())
            .collect()
    }

    #[test]
    fn quotes_escapes_and_ansi_c_are_removed() {
        assert_eq!(texts(r#"r''m -r"f" \/"#), ["rm", "-rf", "/"]);
        assert_eq!(texts(r"$'\x72\155' $'\\'"), ["rm", "\\"]);
        assert_eq!(texts(r#""a b" 'c d'"#), ["a b", "c d"]);
    }

    #[test]
    fn braces_expand_unquoted_only() {
        assert_eq!(texts("r{m,x} /{usr,etc}"), ["rm", "rx", "/usr", "/etc"]);
        assert_eq!(texts("'{a,b}' {1..3} {x}"), ["{a,b}", "1", "2", "3", "{x}"]);
    }

    #[test]
    fn known_variables_and_substitutions_are_used() {
        let mut ctx = Ctx::new(false);
        ctx.vars
            .insert("X".into(), Val::Known(vec!["-rf /".into()]));
        let a: Vec<String> = args("rm $X ${IFS}x", &ctx)
            .iter()
            .map(|a| a.text().to_string())
            .collect();
        assert_eq!(a, ["rm", "-rf", "/", "x"]);
        assert_eq!(
            texts("$(echo rm) `printf '%s' -rf` \"$HOME\""),
            ["rm", "-rf", "~"]
        );
    }

    #[test]
    fn unknown_expansions_become_alternatives() {
        let ctx = Ctx::new(false);
        let a = args(r#"rm "$D/"* $D"#, &ctx);
        assert_eq!(a[1].alts, ["/*", "*/*"]);
        assert!(a[1].dynamic && !a[1].opaque);
        // An unquoted unknown may also split: each piece is an argument of its own.
        assert!(a.iter().skip(2).all(|x| x.opaque));
        let a = args("rm -rf${IFS:0:1}/", &ctx);
        assert!(a.iter().any(|x| x.text() == "/"), "{a:?}");
    }

    #[test]
    fn echo_and_printf_text() {
        assert_eq!(echo_text(&["-e".into(), r"rm\x20-rf".into()]), "rm -rf");
        assert_eq!(
            printf_text(r"%s -%s\n", &["rm".into(), "rf".into()]),
            "rm -rf\n"
        );
    }
}
