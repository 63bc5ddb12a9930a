//! Walks a parsed shell line in execution order, keeping what [`Ctx`] knows (working
//! directory, variables), and checks every command it would run: each simple command after its
//! wrappers are peeled off, every substitution, function body, `sh -c` string, `eval`
//! argument and text piped into a shell. Pipelines are checked as a whole for code that
//! reaches an interpreter from the network or through a decoder.

use crate::ast::{Cmd, List, Part, Pipeline, Redir, RedirOp, Sep, Simple, Word};
use crate::builtins::{calls, cd_targets, declare};
use crate::config::Guard;
use crate::expand::{Arg, Ctx, Val, expand};
use crate::feed::Feed;
use crate::findings::{Findings, Rule, show};
use crate::lex::{self, MAX_DEPTH, is_name};
use crate::opts::{Spec, parse};
use crate::paths::push_unique;
use crate::rules::{self, SHELLS, Source};
use crate::wrappers::{Unwrapped, basename, unwrap};
use crate::{allowlist, files, network, writes};

/// Wrappers around one command (`sudo env nice timeout ...`) before the line is refused.
pub(crate) const MAX_HOPS: usize = 32;

/// Check one shell line.
pub fn check_line(g: &Guard, line: &str, interactive: bool) -> Findings {
    let mut c = Checker {
        g,
        out: Findings::new(&g.allowed),
        depth: 0,
        hops: 0,
    };
    c.script(line, &mut Ctx::new(interactive));
    c.out
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Env {
    pub stdin: Feed,
    /// What substitutions in the arguments produce (`sh <(curl ...)`, `bash -c "$(curl ...)"`).
    pub args: Feed,
    /// A redirection to or from `/dev/tcp` / `/dev/udp`.
    pub network: Option<String>,
    /// More arguments come from standard input (`xargs`).
    pub from_stdin: bool,
}

pub(crate) struct Checker<'g> {
    pub g: &'g Guard,
    pub out: Findings,
    pub depth: usize,
    pub hops: usize,
}

impl Checker<'_> {
    pub(crate) fn script(&mut self, text: &str, ctx: &mut Ctx) {
        if self.depth >= MAX_DEPTH {
            self.out.deny(Rule::Unparseable, || {
                "shell code nests too deeply to check".to_string()
            });
            return;
        }
        self.depth += 1;
        match lex::parse(text, false) {
            Ok(list) => self.list(&list, ctx, &Feed::default()),
            Err(e) => {
                self.out.deny(Rule::Unparseable, || {
                    format!("the shell line does not parse ({e}); only lines the gateway can read are forwarded")
                });
                // With `unparseable` allowed, check what a lenient reading finds.
                if let Ok(list) = lex::parse(text, true) {
                    self.list(&list, ctx, &Feed::default());
                }
            }
        }
        self.depth -= 1;
    }

    pub(crate) fn list(&mut self, l: &List, ctx: &mut Ctx, feed: &Feed) {
        // A `cd` holds only along a `&&` chain; after `;` or `||` the old directory is
        // possible too (the `cd` may have failed or not run).
        let mut before: Vec<String> = Vec::new();
        for (p, sep) in &l.items {
            if self.out.denied() {
                return;
            }
            let old = ctx.cwd.clone();
            self.pipeline(p, ctx, feed);
            if ctx.cwd != old {
                for d in old {
                    push_unique(&mut before, d);
                }
            }
            if *sep != Sep::And {
                for d in before.drain(..) {
                    push_unique(&mut ctx.cwd, d);
                }
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline, ctx: &mut Ctx, feed: &Feed) {
        if let [only] = p.stages.as_slice() {
            return self.cmd(only, ctx, feed);
        }
        // Every stage runs in a subshell: nothing it sets survives the pipeline. A stage is
        // fed by everything before it (`curl | tee x | sh` runs what curl fetched).
        let mut f = feed.clone();
        for stage in &p.stages {
            self.cmd(stage, &mut ctx.clone(), &f);
            f.merge(self.cmd_feed(stage, ctx));
        }
    }

    fn cmd(&mut self, c: &Cmd, ctx: &mut Ctx, feed: &Feed) {
        match c {
            Cmd::Simple(s) => self.simple(s, ctx, feed),
            Cmd::Group {
                body,
                subshell,
                redirs,
            } => {
                let mut env = Env {
                    stdin: feed.clone(),
                    ..Env::default()
                };
                for r in redirs {
                    self.word_scripts(&r.target, ctx);
                    self.redir(r, ctx, "{ ... }", &mut env);
                }
                if *subshell {
                    self.list(body, &mut ctx.clone(), &env.stdin);
                } else {
                    self.list(body, ctx, &env.stdin);
                }
                if let Some(target) = &env.network {
                    network::check_redirect(target, "{ ... }", &mut self.out);
                }
            }
            Cmd::Function { name, body } => {
                let (calls, piped) = calls(body, name, false);
                if calls >= 2 || (calls >= 1 && piped) {
                    self.out.deny(Rule::ForkBomb, || {
                        format!("function `{name}` calls itself in a pipeline or in the background: a fork bomb")
                    });
                }
                // The body is checked even if it is never called: fail closed.
                self.cmd(body, &mut ctx.clone(), &Feed::default());
            }
            Cmd::For { var, words } => {
                let mut vals = Vec::new();
                let mut known = true;
                for w in words {
                    self.word_scripts(w, ctx);
                    for a in expand(w, ctx) {
                        known &= !a.dynamic;
                        vals.extend(a.alts);
                    }
                }
                let val = if known && !words.is_empty() {
                    Val::Known(vals)
                } else {
                    Val::Unknown
                };
                ctx.vars.insert(var.clone(), val);
            }
            Cmd::Case { subject } => self.word_scripts(subject, ctx),
        }
    }

    /// Check the commands a word runs when it is expanded.
    fn word_scripts(&mut self, w: &Word, ctx: &Ctx) {
        for l in w.scripts() {
            self.list(l, &mut ctx.clone(), &Feed::default());
        }
    }

    fn simple(&mut self, s: &Simple, ctx: &mut Ctx, feed: &Feed) {
        for w in &s.words {
            self.word_scripts(w, ctx);
        }
        for r in &s.redirs {
            self.word_scripts(&r.target, ctx);
            if let Some(body) = &r.body {
                self.word_scripts(body, ctx);
            }
        }
        let n = s
            .words
            .iter()
            .take_while(|w| assignment(w).is_some())
            .count();
        let argv: Vec<Arg> = s.words[n..].iter().flat_map(|w| expand(w, ctx)).collect();
        let shown = show(&argv);
        let mut env = Env {
            stdin: feed.clone(),
            ..Env::default()
        };
        for r in &s.redirs {
            self.redir(r, ctx, &shown, &mut env);
        }
        for w in &s.words[n..] {
            for l in w.scripts() {
                env.args.merge(self.list_feed(l, ctx));
            }
        }
        if argv.is_empty() {
            for w in &s.words[..n] {
                self.assign(w, ctx);
            }
            if let Some(target) = &env.network {
                network::check_redirect(target, &shown, &mut self.out);
            }
            return;
        }
        // `LD_PRELOAD=x.so cmd`: the command runs with them.
        for w in &s.words[..n] {
            if let Some((name, value)) = assignment(w) {
                let val = match expand(&value, ctx).as_slice() {
                    [a] if !a.dynamic => Val::Known(a.alts.clone()),
                    [] => Val::Known(vec![String::new()]),
                    _ => Val::Unknown,
                };
                self.env_code(&name, &val, ctx);
            }
        }
        self.hops = 0;
        self.invoke(argv, &env, ctx);
        // After the command: a shell wired to the network is named as such first.
        if let Some(target) = &env.network {
            network::check_redirect(target, &shown, &mut self.out);
        }
    }

    fn assign(&mut self, w: &Word, ctx: &mut Ctx) {
        let Some((name, value)) = assignment(w) else {
            return;
        };
        let args = expand(&value, ctx);
        let val = match args.as_slice() {
            [] => Val::Known(vec![String::new()]),
            [a] if !a.dynamic => Val::Known(a.alts.clone()),
            _ => Val::Unknown,
        };
        self.env_code(&name, &val, ctx);
        match (name.as_str(), &val) {
            ("HOME", Val::Known(v)) => {
                ctx.homes = v.iter().flat_map(|h| ctx.resolve(h)).collect();
            }
            ("HOME", Val::Unknown) => push_unique(&mut ctx.homes, "/".to_string()),
            _ => {}
        }
        ctx.vars.insert(name, val);
    }

    /// A variable whose value is code the shell or every program runs later:
    /// `PROMPT_COMMAND` (shell code, checked as such) and the ones naming a file to run or
    /// load (`BASH_ENV`, `ENV`, `LD_PRELOAD`, `LD_AUDIT`), which the guard cannot read.
    pub(crate) fn env_code(&mut self, name: &str, val: &Val, ctx: &Ctx) {
        match (name, val) {
            ("PROMPT_COMMAND", Val::Known(v)) => {
                for text in v.clone() {
                    self.script(&text, &mut ctx.clone());
                }
            }
            ("PROMPT_COMMAND", Val::Unknown) => self.out.deny(Rule::DynamicCommand, || {
                "PROMPT_COMMAND: the code run before every prompt is only known at run time"
                    .to_string()
            }),
            ("BASH_ENV" | "ENV" | "LD_PRELOAD" | "LD_AUDIT", _) => {
                self.out.deny(Rule::DynamicCommand, || {
                    format!("{name}: names code that programs started later run or load")
                });
            }
            _ => {}
        }
    }

    pub(crate) fn redir(&mut self, r: &Redir, ctx: &Ctx, shown: &str, env: &mut Env) {
        let target = expand(&r.target, ctx)
            .into_iter()
            .next()
            .unwrap_or_else(|| Arg::plain(""));
        if target.text().starts_with("/dev/tcp/") || target.text().starts_with("/dev/udp/") {
            env.network = Some(target.text().to_string());
            if matches!(r.op, RedirOp::In | RedirOp::ReadWrite) {
                env.stdin.download = Some(format!("< {}", target.text()));
            }
        }
        if matches!(r.op, RedirOp::In | RedirOp::ReadWrite) {
            // `bash < <(curl ...)`
            for l in r.target.scripts() {
                env.stdin.merge(self.list_feed(l, ctx));
            }
        }
        if r.writes() && self.g.allowlist && !harmless_sink(target.text()) {
            self.out.hold(Rule::Allowlist, || {
                format!("`{shown} > {}` writes a file; on this target only vetted read-only commands run without approval", target.text())
            });
        }
        if r.writes() {
            writes::check(
                self.g,
                ctx,
                &target,
                &format!("{shown} > {}", target.text()),
                &mut self.out,
            );
        }
        let here = match (r.op, &r.body) {
            (RedirOp::HereDoc, Some(body)) => Some(body),
            (RedirOp::HereString, _) => Some(&r.target),
            _ => None,
        };
        if let Some(w) = here {
            for l in w.scripts() {
                env.stdin.merge(self.list_feed(l, ctx));
            }
            match expand_joined(w, ctx) {
                Some(text) => env.stdin.texts.push(text),
                None => env.stdin.unknown = Some("a here-document".to_string()),
            }
        }
    }

    pub(crate) fn invoke(&mut self, argv: Vec<Arg>, env: &Env, ctx: &mut Ctx) {
        // A program that connects from the host is refused after what it runs is checked,
        // so a destructive command it carries (`ssh other rm -rf /`) is named first.
        let connects: Option<(Vec<String>, Vec<Arg>, String)> = argv.first().map(|first| {
            let names = first.alts.iter().map(|a| basename(a)).collect();
            (names, argv[1..].to_vec(), show(&argv))
        });
        self.invoke_one(argv, env, ctx);
        if let Some((names, args, shown)) = connects {
            for prog in names {
                network::check_client(&prog, &args, &shown, &mut self.out);
            }
        }
    }

    fn invoke_one(&mut self, argv: Vec<Arg>, env: &Env, ctx: &mut Ctx) {
        if self.out.denied() {
            return;
        }
        self.hops += 1;
        if self.hops > MAX_HOPS {
            self.out.deny(Rule::Unparseable, || {
                "too many nested wrapper commands to check".to_string()
            });
            return;
        }
        let Some(first) = argv.first() else { return };
        let shown = show(&argv);
        // `/usr/bin/touc?`, `/usr/bin/to[u]ch`: the shell picks the program by matching files
        // the guard cannot see, so no rule for a program name would apply.
        if first.alts.iter().any(|a| is_pattern(basename(a).as_str())) {
            self.out.deny(Rule::DynamicCommand, || {
                format!(
                    "`{shown}`: the program to run is a pattern the shell matches against files"
                )
            });
            return;
        }
        let mut names: Vec<String> = Vec::new();
        for a in &first.alts {
            push_unique(&mut names, basename(a));
        }
        if first.opaque || (names.len() > 1 && first.dynamic) {
            self.out.deny(Rule::DynamicCommand, || {
                format!("`{shown}`: the program to run is only known at run time")
            });
            return;
        }
        if names.len() > 1 {
            // `for c in rm ls; do $c ...`: each value in turn.
            for n in names {
                let mut v = argv.clone();
                v[0] = Arg::plain(&n);
                self.invoke(v, env, ctx);
            }
            return;
        }
        let Some(prog) = names.pop() else { return };
        let args = &argv[1..];
        if self.g.deny_commands.contains(&prog) {
            self.out.deny(Rule::DeniedCommand, || {
                format!("`{shown}`: `{prog}` is denied on this target")
            });
        }
        let approval = self.g.needs_approval(&prog);
        if approval {
            self.out.approval(format!(
                "`{shown}` runs a command as another user and needs approval"
            ));
        }
        if self.g.allowlist
            && let Some(why) = allowlist::refused(&prog, args, approval, env.from_stdin)
        {
            self.out.hold(Rule::Allowlist, || {
                format!("`{shown}` {why}; on this target only vetted read-only commands run without approval")
            });
        }
        match prog.as_str() {
            "cd" | "pushd" | "popd" => return self.cd(&prog, args, ctx),
            "export" | "declare" | "typeset" | "local" | "readonly" => {
                for a in args {
                    if let Some((name, value)) = a.text().split_once('=') {
                        let val = if a.dynamic {
                            Val::Unknown
                        } else {
                            Val::Known(vec![value.to_string()])
                        };
                        self.env_code(name, &val, ctx);
                    }
                }
                return declare(&prog, args, ctx);
            }
            "read" | "mapfile" | "readarray" => return declare(&prog, args, ctx),
            "find" => return self.find(args, env, ctx, &shown),
            _ => {}
        }
        if files::shell_transfer(self.g, ctx, &prog, args, &shown, &mut self.out) {
            return;
        }
        match unwrap(&prog, args) {
            Unwrapped::No => {
                if !self.g.allowlist
                    && !rules::is_interpreter(&prog)
                    && let Some(why) = allowlist::unknown_wrapper(&prog, args)
                {
                    self.out
                        .hold(Rule::UnknownWrapper, || format!("`{shown}` {why}"));
                }
            }
            Unwrapped::Nothing => {
                // `xargs env`, `xargs nice`: the program to run comes from standard input.
                if env.from_stdin {
                    self.out.deny(Rule::DynamicCommand, || {
                        format!("`{shown}` runs a program named on standard input (xargs), only known at run time")
                    });
                }
                return;
            }
            Unwrapped::Run {
                argv,
                cwd,
                from_stdin,
            } => {
                let mut inner = ctx.clone();
                if let Some(dir) = cwd {
                    inner.cwd = cd_targets(&dir, ctx);
                }
                let env = Env {
                    from_stdin: env.from_stdin || from_stdin,
                    ..env.clone()
                };
                return self.invoke(argv, &env, &mut inner);
            }
            Unwrapped::Script(text) => return self.run_text(&text, env, ctx, &shown),
            Unwrapped::Edit(files) => {
                for f in files {
                    writes::check(self.g, ctx, &f, &shown, &mut self.out);
                }
                return;
            }
        }
        if rules::is_interpreter(&prog) || matches!(prog.as_str(), "source" | "." | "at" | "batch")
        {
            self.interpret(&prog, args, env, ctx, &shown);
        }
        rules::check(
            self.g,
            ctx,
            &prog,
            args,
            env.from_stdin,
            &shown,
            &mut self.out,
        );
    }

    /// Shell code given as arguments (`sh -c`, `eval`, `su -c`, `ssh host cmd`, ...).
    fn run_text(&mut self, parts: &[Arg], env: &Env, ctx: &Ctx, shown: &str) {
        if parts.iter().any(|a| a.dynamic) {
            self.code_from(&env.args, shown);
            self.out.deny(Rule::DynamicCommand, || {
                format!("`{shown}` runs shell code only known at run time")
            });
            return;
        }
        let text = parts.iter().map(Arg::text).collect::<Vec<_>>().join(" ");
        self.script(&text, &mut ctx.clone());
    }

    /// Deny code that comes from a download or a decoder.
    fn code_from(&mut self, f: &Feed, shown: &str) {
        if let Some(d) = &f.download {
            self.out.deny(Rule::DownloadExec, || {
                format!("`{shown}` runs code downloaded by `{d}`, which the guard cannot read")
            });
        }
        if let Some(d) = &f.decoded {
            self.out.deny(Rule::DecodedExec, || {
                format!("`{shown}` runs code decoded by `{d}`, which the guard cannot read")
            });
        }
    }

    fn interpret(&mut self, prog: &str, args: &[Arg], env: &Env, ctx: &Ctx, shown: &str) {
        self.code_from(&env.args, shown);
        if let Some(n) = &env.network {
            self.out.deny(Rule::DownloadExec, || {
                format!("`{shown}` connects an interpreter to the network ({n})")
            });
        }
        let shell = SHELLS.contains(&prog) || matches!(prog, "source" | "." | "at" | "batch");
        let src = match prog {
            "source" | "." => match args.first().map(Arg::text) {
                Some("/dev/stdin" | "-") => Source::Stdin,
                _ => Source::Inline,
            },
            "at" | "batch" => {
                let p = parse(
                    args,
                    Spec {
                        short: "fqtm",
                        ..Spec::default()
                    },
                );
                if p.has(&["-f", "-l", "-r", "-d", "-c"]) {
                    Source::Inline
                } else {
                    Source::Stdin
                }
            }
            _ => rules::source(prog, args),
        };
        match src {
            Source::Command(a) => self.run_text(&[a], env, ctx, shown),
            Source::Stdin => {
                self.code_from(&env.stdin, shown);
                if let Some(u) = &env.stdin.unknown {
                    self.out.deny(Rule::DynamicCommand, || {
                        format!("`{shown}` runs code from {u}, only known at run time")
                    });
                }
                if shell {
                    for t in &env.stdin.texts {
                        self.script(t, &mut ctx.clone());
                    }
                } else {
                    // A shell's standard input is read by the gateway line by line as
                    // commands; another language's program is not shell: held.
                    self.out.hold(Rule::StdinCode, || {
                        format!("`{shown}` reads its program from standard input (or the terminal), which the guard cannot check as commands")
                    });
                }
            }
            Source::File(_) | Source::Inline => {}
        }
    }
}

/// `NAME=value` (or `NAME+=value`): the name and the value as a word.
pub(crate) fn assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit(t, false)) = w.parts.first() else {
        return None;
    };
    let (name, rest) = t.split_once('=')?;
    let name = name.strip_suffix('+').unwrap_or(name);
    if !is_name(name) {
        return None;
    }
    let mut parts = Vec::new();
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string(), false));
    }
    parts.extend(w.parts[1..].iter().cloned());
    Some((name.to_string(), Word { parts }))
}
/// A word's text when fully known (here-documents, here-strings).
fn expand_joined(w: &Word, ctx: &Ctx) -> Option<String> {
    let args = expand(w, ctx);
    if args.iter().any(|a| a.dynamic) {
        return None;
    }
    Some(args.iter().map(Arg::text).collect::<Vec<_>>().join(" "))
}

/// Redirection targets that keep output on the terminal or throw it away.
fn harmless_sink(target: &str) -> bool {
    matches!(
        target,
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty"
    ) || target.starts_with("/dev/fd/")
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;

/// Whether a program name is a glob pattern (`[` alone is the `test` command).
fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?']) || (name.len() > 1 && name.contains('[') && name.contains(']'))
}
