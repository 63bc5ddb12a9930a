//! Commands the walk handles itself because they change what it knows or run other commands
//! in ways no wrapper table captures: `cd` (the working directory), `export`/`read` (variables),
//! `find` (`-delete`, `-exec`), and function bodies that fork themselves.

use crate::ast::{Cmd, List, Sep};
use crate::expand::{Arg, Ctx, Val};
use crate::lex::is_name;
use crate::opts::{Spec, parse};
use crate::paths::push_unique;
use crate::walk::{Checker, Env};
use crate::{rules, writes};

impl Checker<'_> {
    pub(crate) fn cd(&mut self, prog: &str, args: &[Arg], ctx: &mut Ctx) {
        let p = parse(args, Spec::default());
        let new = match p.operands.first() {
            None if prog == "cd" => ctx.homes.clone(),
            Some(a) if a.known() == Some("-") => match ctx.vars.get("OLDPWD") {
                Some(Val::Known(v)) => v.clone(),
                _ => unknown_dir(ctx),
            },
            Some(a) if prog != "popd" => cd_targets(a, ctx),
            _ => unknown_dir(ctx),
        };
        let old = std::mem::replace(&mut ctx.cwd, new);
        ctx.vars.insert("OLDPWD".to_string(), Val::Known(old));
    }

    /// `find`: `-delete` and `-exec` act on each start point and what is under it.
    pub(crate) fn find(&mut self, args: &[Arg], env: &Env, ctx: &mut Ctx, shown: &str) {
        const TESTS: &[&str] = &[
            "-name",
            "-iname",
            "-path",
            "-ipath",
            "-wholename",
            "-regex",
            "-iregex",
            "-type",
            "-xtype",
            "-mtime",
            "-mmin",
            "-atime",
            "-amin",
            "-ctime",
            "-cmin",
            "-newer",
            "-size",
            "-user",
            "-group",
            "-uid",
            "-gid",
            "-perm",
            "-empty",
            "-links",
            "-inum",
            "-samefile",
            "-lname",
            "-nouser",
            "-nogroup",
            "-fstype",
            "-newermt",
        ];
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.text() {
                "-H" | "-L" | "-P" => i += 1,
                "-D" => i += 2,
                t if t.starts_with("-O") => i += 1,
                _ => break,
            }
        }
        let mut starts: Vec<Arg> = args[i.min(args.len())..]
            .iter()
            .take_while(|a| !(a.text().starts_with('-') || a.text() == "(" || a.text() == "!"))
            .cloned()
            .collect();
        let expr = &args[(i + starts.len()).min(args.len())..];
        if starts.is_empty() {
            starts.push(Arg::plain("."));
        }
        // What `-delete` and `{}` stand for: the start point and everything under it, or with
        // tests, something under it (`{}` as a name overlaps only wildcard patterns).
        let filtered = expr.iter().any(|a| TESTS.contains(&a.text()));
        let hits: Vec<Arg> = starts
            .iter()
            .map(|s| Arg {
                alts: s
                    .alts
                    .iter()
                    .flat_map(|a| {
                        if filtered {
                            vec![format!("{a}/{{}}")]
                        } else {
                            vec![a.clone(), format!("{a}/*")]
                        }
                    })
                    .collect(),
                ..s.clone()
            })
            .collect();
        let mut k = 0;
        while k < expr.len() {
            match expr[k].text() {
                "-delete" => {
                    for h in &hits {
                        rules::check_delete(self.g, ctx, h, shown, &mut self.out);
                        writes::check(self.g, ctx, h, shown, &mut self.out);
                    }
                }
                "-fprint" | "-fprint0" | "-fls" | "-fprintf" => {
                    if let Some(f) = expr.get(k + 1) {
                        writes::check(self.g, ctx, f, shown, &mut self.out);
                    }
                }
                "-exec" | "-execdir" | "-ok" | "-okdir" => {
                    let end = expr[k + 1..]
                        .iter()
                        .position(|a| a.text() == ";" || a.text() == "+")
                        .map_or(expr.len(), |p| k + 1 + p);
                    let inner: Vec<Arg> = expr[k + 1..end]
                        .iter()
                        .map(|a| {
                            if !a.text().contains("{}") {
                                return a.clone();
                            }
                            let mut alts = Vec::new();
                            for h in &hits {
                                for halt in &h.alts {
                                    for aalt in &a.alts {
                                        push_unique(&mut alts, aalt.replace("{}", halt));
                                    }
                                }
                            }
                            Arg { alts, ..a.clone() }
                        })
                        .collect();
                    self.invoke(inner, env, &mut ctx.clone());
                    k = end;
                }
                _ => {}
            }
            k += 1;
        }
    }
}

/// `export X=/`, `declare X=/`: assignments; `read X`: X becomes unknown.
pub(crate) fn declare(prog: &str, args: &[Arg], ctx: &mut Ctx) {
    for a in args.iter().filter(|a| !a.text().starts_with('-')) {
        let (name, val) = match a.text().split_once('=') {
            Some((n, v)) if !a.dynamic && !prog.starts_with("read") && prog != "mapfile" => {
                (n, Val::Known(vec![v.to_string()]))
            }
            Some((n, _)) => (n, Val::Unknown),
            None if prog.starts_with("read") || prog == "mapfile" => (a.text(), Val::Unknown),
            None => continue,
        };
        if is_name(name) {
            ctx.vars.insert(name.to_string(), val);
        }
    }
}

fn unknown_dir(ctx: &Ctx) -> Vec<String> {
    let mut v = ctx.cwd.clone();
    for h in ctx.homes.iter().cloned().chain(["/".to_string()]) {
        push_unique(&mut v, h);
    }
    v
}

/// The directories `cd DIR` may land in.
pub(crate) fn cd_targets(dir: &Arg, ctx: &Ctx) -> Vec<String> {
    if dir.opaque {
        return unknown_dir(ctx);
    }
    let mut v = Vec::new();
    for alt in &dir.alts {
        let alt = if alt.is_empty() { "~" } else { alt };
        for c in ctx.resolve(alt) {
            push_unique(&mut v, c);
        }
    }
    v
}

/// How often `body` calls `name`, and whether any call is piped or in the background.
pub(crate) fn calls(c: &Cmd, name: &str, piped: bool) -> (usize, bool) {
    let list = |l: &List| {
        let mut n = 0;
        let mut any = false;
        for (p, sep) in &l.items {
            let bg = *sep == Sep::Background || p.stages.len() > 1;
            for s in &p.stages {
                let (k, pp) = calls(s, name, bg);
                n += k;
                any |= pp;
            }
        }
        (n, any)
    };
    match c {
        Cmd::Simple(s) => {
            let hit = s.words.first().is_some_and(|w| w.literal() == name);
            (usize::from(hit), hit && piped)
        }
        Cmd::Group { body, .. } => list(body),
        _ => (0, false),
    }
}
