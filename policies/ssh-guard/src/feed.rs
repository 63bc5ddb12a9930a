//! What one pipeline stage feeds the next: downloads, decoders, and text known in advance
//! (`echo`, `printf`, here-documents). The pipeline rules ask this when a stage is an
//! interpreter reading its standard input.

use crate::ast::{Cmd, List, Simple};
use crate::expand::{Arg, Ctx, echo_text, expand, printf_text};
use crate::findings::{Findings, show};
use crate::rules;
use crate::walk::{Checker, Env, MAX_HOPS, assignment};
use crate::wrappers::{Unwrapped, basename, unwrap};

/// What reaches a command's standard input (or, for [`Env::args`], its arguments through
/// substitutions) that matters when the command is an interpreter.
#[derive(Debug, Default, Clone)]
pub(crate) struct Feed {
    /// A network download, shown.
    pub download: Option<String>,
    /// A decoder (`base64 -d`, `rev`, ...), shown.
    pub decoded: Option<String>,
    /// Text only known at run time (`echo "$x"`), shown.
    pub unknown: Option<String>,
    /// Known text (`echo 'rm -rf /'`, here-documents).
    pub texts: Vec<String>,
}

impl Feed {
    pub fn merge(&mut self, o: Feed) {
        self.download = self.download.take().or(o.download);
        self.decoded = self.decoded.take().or(o.decoded);
        self.unknown = self.unknown.take().or(o.unknown);
        self.texts.extend(o.texts);
    }
}

impl Checker<'_> {
    /// What a pipeline stage feeds the next one.
    pub(crate) fn cmd_feed(&self, c: &Cmd, ctx: &Ctx) -> Feed {
        let mut f = Feed::default();
        match c {
            Cmd::Simple(s) => f.merge(self.simple_feed(s, ctx)),
            Cmd::Group { body, .. } => f.merge(self.list_feed(body, ctx)),
            _ => {}
        }
        f
    }

    pub(crate) fn list_feed(&self, l: &List, ctx: &Ctx) -> Feed {
        let mut f = Feed::default();
        for (p, _) in &l.items {
            for s in &p.stages {
                f.merge(self.cmd_feed(s, ctx));
            }
        }
        f
    }

    fn simple_feed(&self, s: &Simple, ctx: &Ctx) -> Feed {
        let mut f = Feed::default();
        for w in &s.words {
            for l in w.scripts() {
                let inner = self.list_feed(l, ctx);
                f.download = f.download.or(inner.download);
                f.decoded = f.decoded.or(inner.decoded);
            }
        }
        let n = s
            .words
            .iter()
            .take_while(|w| assignment(w).is_some())
            .count();
        let mut argv: Vec<Arg> = s.words[n..].iter().flat_map(|w| expand(w, ctx)).collect();
        for _ in 0..MAX_HOPS {
            let Some(first) = argv.first() else { break };
            match unwrap(&basename(first.text()), &argv[1..]) {
                Unwrapped::Run { argv: inner, .. } => argv = inner,
                _ => break,
            }
        }
        let mut env = Env::default();
        for r in &s.redirs {
            // Here-documents and here-strings of `cat` (and the like) are what it prints.
            let mut scratch = Checker {
                g: self.g,
                out: Findings::new(&[]),
                depth: self.depth,
                hops: 0,
            };
            scratch.redir(r, ctx, "", &mut env);
        }
        f.download = f.download.or(env.stdin.download.clone());
        let Some(first) = argv.first() else { return f };
        let prog = basename(first.text());
        let args = &argv[1..];
        let texts: Option<Vec<String>> =
            args.iter().map(|a| a.known().map(str::to_string)).collect();
        if rules::is_download(&prog, args) {
            f.download = Some(show(&argv));
        } else if rules::is_decoder(&prog, args) {
            f.decoded = Some(show(&argv));
        } else if prog == "echo" || prog == "printf" {
            match texts {
                Some(t) if prog == "echo" => f.texts.push(echo_text(&t)),
                Some(t) if !t.is_empty() => f.texts.push(printf_text(&t[0], &t[1..])),
                Some(_) => {}
                None => f.unknown = Some(format!("`{}`", show(&argv))),
            }
        } else if prog == "cat" && args.is_empty() {
            f.texts.extend(env.stdin.texts);
            f.unknown = f.unknown.or(env.stdin.unknown);
        }
        f
    }
}
