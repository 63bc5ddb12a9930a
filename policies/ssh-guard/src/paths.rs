//! Paths as the guard compares them: lexical normalisation, the home directory, and glob
//! patterns that may or may not name the same file.
//!
//! The policy never sees the host's filesystem, so every answer here is about what a path
//! *could* name. `~` (and a relative path from the login directory) could be `/root` or
//! `/home/USER`: both are tried, with `~` standing in for the user's name in `/home/~` (no
//! real account is called `~`). A glob is compared with a protected pattern by asking whether
//! some path matches both, so `/u*`, `/*` and `/???` all reach `/usr`.

/// Where `~` can be: root's home, or a user's home under `/home` (`~` stands for the name).
pub const HOMES: [&str; 2] = ["/root", "/home/~"];

/// Normalise an absolute path lexically: collapse `//` and `.`, apply `..` (which stops at `/`),
/// drop a trailing `/`.
pub fn normalize(abs: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in abs.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", out.join("/"))
    }
}

/// Every absolute, normalised path `path` can name when the working directory is one of `cwd`
/// and the home directory one of `homes` (all absolute): `~` and `~/x` give one candidate per
/// home, `~user` gives `/home/user` (or `/root`), a relative path one per working directory.
pub fn resolve<S: AsRef<str>>(path: &str, cwd: &[String], homes: &[S]) -> Vec<String> {
    let mut raw = Vec::new();
    if path == "~" || path.starts_with("~/") {
        for home in homes {
            raw.push(format!("{}/{}", home.as_ref(), &path[1..]));
        }
    } else if let Some(rest) = path.strip_prefix('~') {
        let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let home = if user == "root" {
            "/root".to_string()
        } else {
            format!("/home/{user}")
        };
        raw.push(format!("{home}/{tail}"));
    } else if path.starts_with('/') {
        raw.push(path.to_string());
    } else {
        for dir in cwd {
            raw.push(format!("{dir}/{path}"));
        }
    }
    let mut out = Vec::new();
    for p in raw {
        through_proc(&p, cwd, 0, &mut out);
    }
    out
}

/// `path` normalised, or, when it goes through a process's view of the file system
/// (`/proc/PID/root`, the root; `/proc/PID/cwd`, a working directory: one of `cwd`, or any),
/// the paths it can name: `/proc/self/root/etc/x` is `/etc/x`, and `/proc/self/cwd/../etc`
/// is the parent of the working directory's `etc` (the `..` applies to the link's target).
fn through_proc(path: &str, cwd: &[String], depth: usize, out: &mut Vec<String>) {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let named: Vec<String> = match segs.as_slice() {
        ["proc", _pid, link, rest @ ..] if depth < 8 => {
            let rest = rest.join("/");
            match *link {
                "root" => vec![format!("/{rest}")],
                "cwd" => cwd
                    .iter()
                    .map(|d| format!("{d}/{rest}"))
                    .chain([format!("/{rest}")])
                    .collect(),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    if named.is_empty() {
        push_unique(out, normalize(path));
    }
    for n in named {
        through_proc(&n, cwd, depth + 1, out);
    }
}

pub fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// A list of absolute path patterns (globs allowed; `~` expanded to both homes).
#[derive(Debug, Clone, Default)]
pub struct PathList {
    /// Each entry, and its segments as glob tokens (compiled once: lines can be long).
    entries: Vec<(String, Vec<Vec<G>>)>,
}

impl PathList {
    /// Build from config entries: each must be absolute or start with `~`.
    pub fn new<S: AsRef<str>>(raw: &[S]) -> Result<PathList, String> {
        let mut list = PathList::default();
        for r in raw {
            let r = r.as_ref();
            if !(r.starts_with('/') || r.starts_with('~')) {
                return Err(format!("path `{r}` must be absolute (or start with `~`)"));
            }
            for p in resolve(r, &[], &HOMES) {
                list.push(p);
            }
        }
        Ok(list)
    }

    fn push(&mut self, p: String) {
        if !self.entries.iter().any(|(e, _)| *e == p) {
            let compiled = compile(&p);
            self.entries.push((p, compiled));
        }
    }

    pub fn extend(&mut self, other: PathList) {
        for (p, _) in other.entries {
            self.push(p);
        }
    }

    /// The entry that deleting `target` (absolute, normalised, maybe a glob) would take away:
    /// one it may name, one it may contain, or — when its last segment matches every name, as
    /// in `/var/*` — one whose contents it empties.
    pub fn deleted_by(&self, target: &str) -> Option<&str> {
        let t = compile(target);
        let empties = t.last().is_some_and(|s| matches_every_name(s));
        self.entries
            .iter()
            .find(|(_, e)| {
                (0..=e.len()).any(|n| {
                    let ancestor = &e[..n];
                    overlaps(&t, ancestor) || (empties && overlaps(&t[..t.len() - 1], ancestor))
                })
            })
            .map(|(s, _)| s.as_str())
    }

    /// The entry `path` (absolute, normalised, maybe a glob) may be, or may be under.
    pub fn containing(&self, path: &str) -> Option<&str> {
        let p = compile(path);
        self.entries
            .iter()
            .find(|(_, e)| p.len() >= e.len() && overlaps(&p[..e.len()], e))
            .map(|(s, _)| s.as_str())
    }
}

/// A path's segments as glob tokens.
fn compile(path: &str) -> Vec<Vec<G>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(glob)
        .collect()
}

/// Whether some path matches both segment lists (`**` is taken as `*`).
fn overlaps(a: &[Vec<G>], b: &[Vec<G>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| segment_overlap(x, y))
}

/// A segment such as `*`, `.*` or `?*`: it matches (nearly) every name in a directory.
fn matches_every_name(g: &[G]) -> bool {
    g.contains(&G::Star)
        && g.iter()
            .all(|t| matches!(t, G::Star | G::One | G::Lit('.')))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G {
    Lit(char),
    /// `?` or a bracket expression (taken as any one character).
    One,
    Star,
}

fn glob(seg: &str) -> Vec<G> {
    let chars: Vec<char> = seg.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if out.last() != Some(&G::Star) {
                    out.push(G::Star);
                }
            }
            '?' => out.push(G::One),
            '[' => {
                // `[...]` up to the closing bracket (a `]` right after `[` or `[!` is literal).
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '!' || chars[j] == '^') {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j < chars.len() {
                    out.push(G::One);
                    i = j;
                } else {
                    out.push(G::Lit('['));
                }
            }
            c => out.push(G::Lit(c)),
        }
        i += 1;
    }
    out
}

/// Whether some string matches both glob segments: a dynamic programme over both patterns.
fn segment_overlap(a: &[G], b: &[G]) -> bool {
    let literal = |g: &[G]| g.iter().all(|t| matches!(t, G::Lit(_)));
    if literal(a) && literal(b) {
        return a == b;
    }
    // can[i][j]: the suffixes a[i..] and b[j..] have a common match.
    let (n, m) = (a.len(), b.len());
    let mut can = vec![vec![false; m + 1]; n + 1];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            can[i][j] = if i == n && j == m {
                true
            } else if i < n && a[i] == G::Star {
                can[i + 1][j] || (j < m && can[i][j + 1])
            } else if j < m && b[j] == G::Star {
                can[i][j + 1] || (i < n && can[i + 1][j])
            } else if i < n && j < m {
                let same = match (a[i], b[j]) {
                    (G::Lit(x), G::Lit(y)) => x == y,
                    _ => true,
                };
                same && can[i + 1][j + 1]
            } else {
                false
            };
        }
    }
    can[0][0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> PathList {
        PathList::new(entries).unwrap_or_default()
    }

    #[test]
    fn a_process_view_of_the_file_system_names_the_real_path() {
        let cwd = vec!["/srv/app".to_string()];
        let homes: [&str; 0] = [];
        assert_eq!(resolve("/proc/self/root/etc/x", &cwd, &homes), ["/etc/x"]);
        assert_eq!(
            resolve("/proc/1/root/proc/self/root/srv", &cwd, &homes),
            ["/srv"]
        );
        assert_eq!(
            resolve("/proc/self/cwd/../x", &cwd, &homes),
            ["/srv/x", "/x"]
        );
        assert_eq!(
            resolve("/proc/self/cwd/x", &cwd, &homes),
            ["/srv/app/x", "/x"]
        );
        assert_eq!(resolve("//proc/./1/root/../etc", &cwd, &homes), ["/etc"]);
        assert_eq!(
            resolve("/proc/self/status", &cwd, &homes),
            ["/proc/self/status"]
        );
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize("//usr/./lib/../bin/"), "/usr/bin");
        assert_eq!(normalize("/../.."), "/");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn resolve_tries_both_homes_and_every_cwd() {
        assert_eq!(
            resolve("~/.ssh", &[], &HOMES),
            vec!["/root/.ssh", "/home/~/.ssh"]
        );
        assert_eq!(resolve("~/../..", &[], &HOMES), vec!["/"]);
        assert_eq!(resolve("~alice/x", &[], &HOMES), vec!["/home/alice/x"]);
        let cwd = vec!["/tmp".to_string(), "/".to_string()];
        assert_eq!(resolve("../etc", &cwd, &HOMES), vec!["/etc"]);
        assert_eq!(resolve("usr", &cwd, &HOMES), vec!["/tmp/usr", "/usr"]);
    }

    #[test]
    fn globs_overlap_when_some_name_matches_both() {
        let o = |a: &str, b: &str| segment_overlap(&glob(a), &glob(b));
        assert!(o("u*", "usr"));
        assert!(o("???", "usr"));
        assert!(o("[a-z]sr", "usr"));
        assert!(o("lib*", "*64"));
        assert!(o("*", "lib*"));
        assert!(!o("u*x", "usr"));
        assert!(!o("????", "usr"));
        assert!(!o("tmp", "lib*"));
    }

    #[test]
    fn deleted_by_covers_self_ancestors_globs_and_emptying() {
        let p = list(&["/usr", "/home/*", "/lib*", "~"]);
        for t in [
            "/",
            "/usr",
            "/u*",
            "/*",
            "/home",
            "/home/alice",
            "/lib64",
            "/root",
            "/home/*",
        ] {
            assert!(p.deleted_by(t).is_some(), "{t}");
        }
        for t in ["/usr/*", "/home/alice/*", "/root/.*"] {
            assert!(p.deleted_by(t).is_some(), "{t}");
        }
        for t in [
            "/tmp",
            "/usr/lib/x",
            "/home/alice/build",
            "/var",
            "/root/x",
            "/tmp/*",
        ] {
            assert!(p.deleted_by(t).is_none(), "{t}");
        }
    }

    #[test]
    fn containing_is_prefix_by_segment() {
        let p = list(&["/etc", "~/.ssh"]);
        assert_eq!(p.containing("/etc"), Some("/etc"));
        assert_eq!(p.containing("/etc/ssh/sshd_config"), Some("/etc"));
        assert_eq!(
            p.containing("/home/~/.ssh/authorized_keys"),
            Some("/home/~/.ssh")
        );
        assert_eq!(p.containing("/*/passwd"), Some("/etc"));
        assert_eq!(p.containing("/etcetera"), None);
        assert_eq!(p.containing("/"), None);
        assert!(PathList::new(&["etc"]).is_err());
    }
}
