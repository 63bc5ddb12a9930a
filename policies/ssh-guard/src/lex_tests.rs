//! Tests of the shell reader: structure, quoting, substitutions, here-documents.

#![allow(clippy::panic)]
use super::*;
use crate::ast::Cmd;

fn list(text: &str) -> List {
    parse(text, false).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The first words of every simple command, in order, substitutions included.
fn programs(text: &str) -> Vec<String> {
    fn walk_list(l: &List, out: &mut Vec<String>) {
        for (p, _) in &l.items {
            for c in &p.stages {
                walk_cmd(c, out);
            }
        }
    }
    fn walk_word(w: &Word, out: &mut Vec<String>) {
        for l in w.scripts() {
            walk_list(l, out);
        }
    }
    fn walk_cmd(c: &Cmd, out: &mut Vec<String>) {
        match c {
            Cmd::Simple(s) => {
                if let Some(w) = s.words.first() {
                    out.push(w.literal());
                }
                for w in &s.words {
                    walk_word(w, out);
                }
                for r in &s.redirs {
                    walk_word(&r.target, out);
                    if let Some(b) = &r.body {
                        walk_word(b, out);
                    }
                }
            }
            Cmd::Group { body, .. } => walk_list(body, out),
            Cmd::Function { body, .. } => walk_cmd(body, out),
            Cmd::For { words, .. } => words.iter().for_each(|w| walk_word(w, out)),
            Cmd::Case { subject } => walk_word(subject, out),
        }
    }
    let mut out = Vec::new();
    walk_list(&list(text), &mut out);
    out
}

#[test]
fn operators_split_simple_commands() {
    assert_eq!(
        programs("a; b && c || d | e & f\ng |& h"),
        ["a", "b", "c", "d", "e", "f", "g", "h"]
    );
    assert_eq!(programs("a;;b;&c"), ["a", "b", "c"]);
}

#[test]
fn substitutions_are_found_everywhere() {
    assert_eq!(
        programs("echo $(a `b` $(c)) \"$(d)\" <(e) >(f)"),
        ["echo", "a", "b", "c", "d", "e", "f"]
    );
    assert_eq!(programs("echo ${x:-$(a)} ${y/$(b)/}"), ["echo", "a", "b"]);
    assert_eq!(programs("cat <<EOF\n$(a)\nEOF\nb"), ["cat", "a", "b"]);
    assert_eq!(programs("cat <<'EOF'\n$(a)\nEOF\nb"), ["cat", "b"]);
}

#[test]
fn groups_functions_and_compound_heads() {
    assert_eq!(programs("{ a; b; } > x; (c | d)"), ["a", "b", "c", "d"]);
    assert_eq!(programs(":(){ :|:& };:"), [":", ":", ":"]);
    assert_eq!(programs("function f { a; }; f"), ["a", "f"]);
    assert_eq!(
        programs("if a; then b; else c; fi; while d; do e; done"),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(programs("for x in $(a) b; do c $x; done"), ["a", "c"]);
    assert_eq!(
        programs("case $(a) in x) b;; y|z) c;; esac"),
        ["a", "x", "b", "y", "z", "c"]
    );
}

#[test]
fn redirections_take_their_targets() {
    let l = list("echo a>/etc/x 2>&1 &>>log <in <<<here");
    let Some((p, _)) = l.items.first() else {
        panic!("no items")
    };
    let Cmd::Simple(s) = &p.stages[0] else {
        panic!("not simple")
    };
    assert_eq!(s.words.len(), 2);
    let ops: Vec<_> = s
        .redirs
        .iter()
        .map(|r| (r.op, r.target.literal()))
        .collect();
    assert_eq!(
        ops,
        [
            (RedirOp::Out, "/etc/x".to_string()),
            (RedirOp::DupOut, "1".to_string()),
            (RedirOp::Append, "log".to_string()),
            (RedirOp::In, "in".to_string()),
            (RedirOp::HereString, "here".to_string()),
        ]
    );
    assert!(s.redirs[0].writes() && !s.redirs[1].writes());
}

#[test]
fn quoting_errors_are_errors_unless_lenient() {
    for bad in [
        "echo 'a", "echo \"a", "echo $(a", "echo `a", "echo ${a", "echo a\\", "echo >",
    ] {
        assert!(parse(bad, false).is_err(), "{bad}");
    }
    assert!(parse("echo 'a", true).is_ok());
    assert!(parse("echo '(' \")\" \\;", false).is_ok());
}

#[test]
fn comments_and_continuations() {
    assert_eq!(programs("a # b; c\nd"), ["a", "d"]);
    assert_eq!(programs("r\\\nm x"), ["rm"]);
    assert_eq!(programs("echo a#b"), ["echo"]);
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{}x{}", "$(".repeat(20), ")".repeat(20));
    assert!(parse(&deep, false).is_err());
    let groups = format!("{}x{}", "( ".repeat(5000), " )".repeat(5000));
    assert!(parse(&groups, false).is_err());
    let braces = format!("{}x{}", "{ ".repeat(5000), "; }".repeat(5000));
    assert!(parse(&braces, false).is_err());
    let params = format!("${{a:-{}x{}", "${a:-".repeat(20), "}".repeat(21));
    assert!(parse(&format!("echo {params}"), false).is_err());
    assert!(parse(&format!("{}x{}", "( ".repeat(60), " )".repeat(60)), false).is_ok());
}
