//! A small reader for POSIX shell (with the bash extensions agents use), tokenizer half: words
//! with their quoting, operators, redirections and here-documents, keeping every place where
//! the shell would run something else — `$(...)`, backticks, `<(...)`. [`crate::grammar`]
//! turns the tokens into lists, pipelines and commands.
//!
//! It does not evaluate anything; [`crate::expand`] does what little evaluation the guard needs.
//! It is strict about quoting (an unterminated quote or substitution is an error: the shell
//! would not run the line as written either).

use crate::ast::{List, Param, ParamOp, Part, Redir, RedirOp, Word};
use crate::escapes::decode_escapes;
use crate::grammar::{Op, Parser, Tok};

/// How deeply substitutions and nested scripts may nest before the line is refused.
pub const MAX_DEPTH: usize = 12;

/// Parse `text` as a shell script. `lenient` closes unterminated quotes at the end instead of
/// failing.
pub fn parse(text: &str, lenient: bool) -> Result<List, String> {
    parse_at(text, lenient, 0)
}

fn parse_at(text: &str, lenient: bool, depth: usize) -> Result<List, String> {
    if depth > MAX_DEPTH {
        return Err("substitutions nest too deeply".to_string());
    }
    let mut lx = Lexer {
        s: text.chars().collect(),
        i: 0,
        lenient,
        depth,
    };
    let toks = lx.tokens(false)?;
    Parser::new(toks).script()
}

struct Lexer {
    s: Vec<char>,
    i: usize,
    lenient: bool,
    depth: usize,
}

/// A here-document waiting for its body (which starts after the next newline).
struct Pending {
    tok: usize,
    delim: String,
    strip_tabs: bool,
    expands: bool,
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')'
    )
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn starts(&self, p: &str) -> bool {
        p.chars().enumerate().all(|(k, c)| self.at(k) == Some(c))
    }

    fn unterminated(&self, what: &str) -> Result<(), String> {
        if self.lenient {
            Ok(())
        } else {
            Err(format!("unterminated {what}"))
        }
    }

    /// Tokens up to the end, or (`in_subst`) up to the `)` that closes a `$(` or `<(`.
    fn tokens(&mut self, in_subst: bool) -> Result<Vec<Tok>, String> {
        let mut toks = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut parens = 0usize;
        loop {
            while matches!(self.peek(), Some(' ' | '\t')) || self.starts("\\\n") {
                self.i += if self.peek() == Some('\\') { 2 } else { 1 };
            }
            let Some(c) = self.peek() else {
                if in_subst {
                    self.unterminated("`$(`")?;
                }
                break;
            };
            let op = |o: Op, n: usize| (Some(o), n);
            let (o, n) = match c {
                '\n' => {
                    self.i += 1;
                    for p in pending.drain(..) {
                        let body = self.heredoc_body(&p)?;
                        if let Some(Tok::Redir(r)) = toks.get_mut(p.tok) {
                            r.body = Some(body);
                        }
                    }
                    toks.push(Tok::Newline);
                    continue;
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                    continue;
                }
                ';' if self.starts(";;&") => op(Op::DSemi, 3),
                ';' if self.starts(";;") || self.starts(";&") => op(Op::DSemi, 2),
                ';' => op(Op::Semi, 1),
                '&' if self.starts("&&") => op(Op::And, 2),
                '&' if self.starts("&>") => (None, 0),
                '&' => op(Op::Amp, 1),
                '|' if self.starts("||") => op(Op::Or, 2),
                '|' if self.starts("|&") => op(Op::Pipe, 2),
                '|' => op(Op::Pipe, 1),
                '(' => {
                    parens += 1;
                    op(Op::LParen, 1)
                }
                ')' if in_subst && parens == 0 => {
                    self.i += 1;
                    return Ok(toks);
                }
                ')' => {
                    parens = parens.saturating_sub(1);
                    op(Op::RParen, 1)
                }
                '<' | '>' if self.at(1) == Some('(') => (None, 1),
                '<' | '>' => (None, 0),
                _ => (None, 1),
            };
            if let Some(o) = o {
                self.i += n;
                toks.push(Tok::Op(o));
            } else if n == 0 {
                let r = self.redir(&mut pending, toks.len())?;
                toks.push(Tok::Redir(r));
            } else {
                let w = self.word()?;
                // `2>file`, `{fd}>file`: a word right before a redirection names the fd.
                if matches!(self.peek(), Some('<' | '>'))
                    && self.at(1) != Some('(')
                    && is_fd_word(&w)
                {
                    let r = self.redir(&mut pending, toks.len())?;
                    toks.push(Tok::Redir(r));
                    continue;
                }
                toks.push(Tok::Word(w));
            }
        }
        // A here-document still pending has no body in the line (an interactive line is sent
        // before its body is typed): there is nothing to read.
        Ok(toks)
    }

    fn redir(&mut self, pending: &mut Vec<Pending>, tok: usize) -> Result<Redir, String> {
        const OPS: &[(&str, RedirOp)] = &[
            ("&>>", RedirOp::Append),
            ("&>", RedirOp::Out),
            ("<<<", RedirOp::HereString),
            ("<<-", RedirOp::HereDoc),
            ("<<", RedirOp::HereDoc),
            ("<>", RedirOp::ReadWrite),
            ("<&", RedirOp::DupIn),
            ("<", RedirOp::In),
            (">>", RedirOp::Append),
            (">|", RedirOp::Out),
            (">&", RedirOp::DupOut),
            (">", RedirOp::Out),
        ];
        let Some((text, op)) = OPS.iter().find(|(t, _)| self.starts(t)).copied() else {
            return Err("expected a redirection".to_string());
        };
        self.i += text.len();
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
        let target = self.word()?;
        if target.parts.is_empty() {
            return Err(format!("`{text}` without a target"));
        }
        if op == RedirOp::HereDoc {
            let quoted = target
                .parts
                .iter()
                .any(|p| !matches!(p, Part::Lit(_, false)));
            pending.push(Pending {
                tok,
                delim: target.literal(),
                strip_tabs: text == "<<-",
                expands: !quoted,
            });
        }
        Ok(Redir {
            op,
            target,
            body: None,
        })
    }

    /// A here-document's body: the lines up to the delimiter line (or the end).
    fn heredoc_body(&mut self, p: &Pending) -> Result<Word, String> {
        let mut text = String::new();
        while self.peek().is_some() {
            let start = self.i;
            while self.peek().is_some_and(|c| c != '\n') {
                self.i += 1;
            }
            let line: String = self.s[start..self.i].iter().collect();
            if self.peek() == Some('\n') {
                self.i += 1;
            }
            let line = if p.strip_tabs {
                line.trim_start_matches('\t').to_string()
            } else {
                line
            };
            if line == p.delim {
                break;
            }
            text.push_str(&line);
            text.push('\n');
        }
        if !p.expands {
            return Ok(Word::lit(&text, true));
        }
        let mut sub = Lexer {
            s: text.chars().collect(),
            i: 0,
            lenient: self.lenient,
            depth: self.depth,
        };
        Ok(Word {
            parts: sub.dquoted(None)?,
        })
    }

    fn word(&mut self) -> Result<Word, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, parts: &mut Vec<Part>| {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(lit), false));
            }
        };
        while let Some(c) = self.peek() {
            match c {
                '<' | '>' if self.at(1) == Some('(') => {
                    flush(&mut lit, &mut parts);
                    self.i += 2;
                    let body = self.nested_tokens()?;
                    parts.push(Part::ProcSubst(body));
                }
                c if is_meta(c) => break,
                '\'' => {
                    flush(&mut lit, &mut parts);
                    self.i += 1;
                    let start = self.i;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.i += 1;
                    }
                    let text: String = self.s[start..self.i].iter().collect();
                    if self.peek().is_none() {
                        self.unterminated("`'`")?;
                    }
                    self.i += 1;
                    parts.push(Part::Lit(text, true));
                }
                '"' => {
                    flush(&mut lit, &mut parts);
                    self.i += 1;
                    parts.extend(self.dquoted(Some('"'))?);
                }
                '\\' => {
                    flush(&mut lit, &mut parts);
                    match self.at(1) {
                        Some('\n') => {}
                        Some(c) => parts.push(Part::Lit(c.to_string(), true)),
                        None => self.unterminated("`\\` at the end")?,
                    }
                    self.i += 2;
                }
                '$' if self.at(1) == Some('\'') => {
                    flush(&mut lit, &mut parts);
                    self.i += 2;
                    parts.push(Part::Lit(self.ansi_c()?, true));
                }
                '$' if self.at(1) == Some('"') => {
                    flush(&mut lit, &mut parts);
                    self.i += 2;
                    parts.extend(self.dquoted(Some('"'))?);
                }
                '$' => {
                    flush(&mut lit, &mut parts);
                    parts.push(self.dollar(false)?);
                }
                '`' => {
                    flush(&mut lit, &mut parts);
                    parts.push(self.backtick(false)?);
                }
                '~' if parts.is_empty() && (lit.is_empty() || assignment_prefix(&lit)) => {
                    flush(&mut lit, &mut parts);
                    self.i += 1;
                    let start = self.i;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    {
                        self.i += 1;
                    }
                    let user: String = self.s[start..self.i].iter().collect();
                    parts.push(Part::Tilde(user));
                }
                c => {
                    lit.push(c);
                    self.i += 1;
                }
            }
        }
        flush(&mut lit, &mut parts);
        Ok(Word { parts })
    }

    /// The inside of `"..."` (or of an expanding here-document when `end` is `None`).
    fn dquoted(&mut self, end: Option<char>) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        loop {
            let Some(c) = self.peek() else {
                if end.is_some() {
                    self.unterminated("`\"`")?;
                }
                break;
            };
            if Some(c) == end {
                self.i += 1;
                break;
            }
            match c {
                '\\' if self.at(1).is_some_and(|n| "$`\"\\\n".contains(n)) => {
                    if self.at(1) != Some('\n') {
                        lit.extend(self.at(1));
                    }
                    self.i += 2;
                }
                '$' | '`' => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit), true));
                    }
                    let p = if c == '$' {
                        self.dollar(true)?
                    } else {
                        self.backtick(true)?
                    };
                    parts.push(p);
                }
                c => {
                    lit.push(c);
                    self.i += 1;
                }
            }
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Lit(lit, true));
        }
        Ok(parts)
    }

    /// `$...` at the cursor.
    fn dollar(&mut self, quoted: bool) -> Result<Part, String> {
        self.i += 1;
        match self.peek() {
            // `$((`: arithmetic. Read as a nested script (so the substitutions inside are
            // found), but its words are not commands.
            Some('(') if self.at(1) == Some('(') => {
                self.i += 1;
                let body = self.nested_tokens()?;
                Ok(Part::Arith(crate::ast::list_words(&body)))
            }
            Some('(') => {
                self.i += 1;
                Ok(Part::Subst(self.nested_tokens()?, quoted))
            }
            Some('{') => self.braced_param(quoted),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.i += 1;
                }
                let name: String = self.s[start..self.i].iter().collect();
                Ok(Part::Param(Param {
                    name,
                    op: ParamOp::Plain,
                    quoted,
                }))
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.i += 1;
                Ok(Part::Param(Param {
                    name: c.to_string(),
                    op: ParamOp::Plain,
                    quoted,
                }))
            }
            _ => Ok(Part::Lit("$".to_string(), quoted)),
        }
    }

    /// `${...}` at the cursor (on the `{`).
    fn braced_param(&mut self, quoted: bool) -> Result<Part, String> {
        self.i += 1;
        let start = self.i;
        let mut depth = 1;
        while let Some(c) = self.peek() {
            match c {
                '\\' => self.i += 1,
                '\'' if !quoted => {
                    self.i += 1;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.i += 1;
                    }
                }
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        if self.peek().is_none() {
            self.unterminated("`${`")?;
        }
        let inner: String = self.s[start..self.i.min(self.s.len())].iter().collect();
        self.i += 1;
        let name_len = if inner.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len())
        } else if inner.starts_with(|c: char| c.is_ascii_digit() || "@*?$!-".contains(c)) {
            1
        } else {
            0
        };
        let (name, rest) = inner.split_at(name_len);
        let sub = |text: &str| -> Result<Word, String> {
            if self.depth + 1 > MAX_DEPTH {
                return Err("substitutions nest too deeply".to_string());
            }
            let mut lx = Lexer {
                s: text.chars().collect(),
                i: 0,
                lenient: self.lenient,
                depth: self.depth + 1,
            };
            Ok(Word {
                parts: lx.dquoted(None)?,
            })
        };
        let op = if name.is_empty() {
            // `${#x}`, `${!x}`: lengths and indirection are only known at run time.
            ParamOp::Other(sub(rest)?)
        } else if rest.is_empty() {
            ParamOp::Plain
        } else if let Some(w) = ["-", ":-", "=", ":="]
            .iter()
            .find_map(|o| rest.strip_prefix(o))
        {
            ParamOp::Default(sub(w)?)
        } else if let Some(w) = ["+", ":+"].iter().find_map(|o| rest.strip_prefix(o)) {
            ParamOp::Alternative(sub(w)?)
        } else {
            ParamOp::Other(sub(rest)?)
        };
        Ok(Part::Param(Param {
            name: name.to_string(),
            op,
            quoted,
        }))
    }

    fn backtick(&mut self, quoted: bool) -> Result<Part, String> {
        self.i += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    self.unterminated("backquote")?;
                    break;
                }
                Some('`') => {
                    self.i += 1;
                    break;
                }
                Some('\\')
                    if self
                        .at(1)
                        .is_some_and(|n| "$`\\".contains(n) || (quoted && n == '"')) =>
                {
                    text.extend(self.at(1));
                    self.i += 2;
                }
                Some(c) => {
                    text.push(c);
                    self.i += 1;
                }
            }
        }
        Ok(Part::Subst(
            parse_at(&text, self.lenient, self.depth + 1)?,
            quoted,
        ))
    }

    /// The commands inside `$(...)` / `<(...)`, the cursor just past the `(`.
    fn nested_tokens(&mut self) -> Result<List, String> {
        if self.depth + 1 > MAX_DEPTH {
            return Err("substitutions nest too deeply".to_string());
        }
        self.depth += 1;
        let toks = self.tokens(true);
        self.depth -= 1;
        Parser::new(toks?).script()
    }

    /// The inside of `$'...'`, with its backslash escapes decoded.
    fn ansi_c(&mut self) -> Result<String, String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == '\'' {
                break;
            }
            self.i += if c == '\\' { 2 } else { 1 };
        }
        let raw: String = self.s[start..self.i.min(self.s.len())].iter().collect();
        if self.peek().is_none() {
            self.unterminated("`$'`")?;
        }
        self.i += 1;
        Ok(decode_escapes(&raw))
    }
}

/// `NAME=` (so a `~` right after it is a tilde expansion).
fn assignment_prefix(lit: &str) -> bool {
    lit.strip_suffix('=').is_some_and(is_name)
}

pub fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A word that names the fd of the redirection right after it: `2` in `2>x`, `{fd}` in `{fd}>x`.
fn is_fd_word(w: &Word) -> bool {
    match w.parts.as_slice() {
        [Part::Lit(t, false)] => {
            t.chars().all(|c| c.is_ascii_digit()) || (t.starts_with('{') && t.ends_with('}'))
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "lex_tests.rs"]
mod tests;
