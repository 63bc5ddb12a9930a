//! The shape of a shell line as [`crate::lex`] reads it.

/// Commands separated by `;`, `&`, `&&`, `||` or newlines.
#[derive(Debug, Default, Clone)]
pub struct List {
    pub items: Vec<(Pipeline, Sep)>,
}

/// What follows a pipeline in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sep {
    /// `;`, a newline or the end.
    Seq,
    Background,
    And,
    Or,
}

/// Commands joined by `|` (or `|&`).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub stages: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub enum Cmd {
    Simple(Simple),
    /// `{ ...; }` or `( ... )`.
    Group {
        body: List,
        subshell: bool,
        redirs: Vec<Redir>,
    },
    /// `name() body` or `function name body`.
    Function {
        name: String,
        body: Box<Cmd>,
    },
    /// The head of `for VAR in WORDS` (the body follows as ordinary commands).
    For {
        var: String,
        words: Vec<Word>,
    },
    /// The head of `case WORD in` (the branches follow as ordinary commands).
    Case {
        subject: Word,
    },
}

/// Words (assignments first, then the command and its arguments) and redirections.
#[derive(Debug, Default, Clone)]
pub struct Simple {
    pub words: Vec<Word>,
    pub redirs: Vec<Redir>,
}

#[derive(Debug, Default, Clone)]
pub struct Word {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub enum Part {
    /// Text, and whether it was quoted (quoted text is not brace-expanded or split).
    Lit(String, bool),
    /// `~` or `~user` at the start of a word (or after `NAME=`).
    Tilde(String),
    Param(Param),
    /// `$(...)` or a backquoted command: its output becomes text (split unless quoted).
    Subst(List, bool),
    /// `<(...)` or `>(...)`: becomes a `/dev/fd/N` path.
    ProcSubst(List),
    /// `$((...))`: a number only known at run time. Its words are kept for the command
    /// substitutions inside them (`$(( $(cmd) + 1 ))`); they are not commands themselves.
    Arith(Vec<Word>),
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub op: ParamOp,
    pub quoted: bool,
}

#[derive(Debug, Clone)]
pub enum ParamOp {
    /// `$x`, `${x}`.
    Plain,
    /// `${x-w}`, `${x:-w}`, `${x=w}`, `${x:=w}`: the value or `w`.
    Default(Word),
    /// `${x+w}`, `${x:+w}`: `w` or nothing.
    Alternative(Word),
    /// Anything else (`${#x}`, `${x%w}`, `${x/a/b}`, ...): only known at run time. The word is
    /// kept for the substitutions it may run.
    Other(Word),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    In,
    /// `>`, `>|`, `&>`.
    Out,
    /// `>>`, `&>>`.
    Append,
    ReadWrite,
    DupIn,
    DupOut,
    HereDoc,
    HereString,
}

#[derive(Debug, Clone)]
pub struct Redir {
    pub op: RedirOp,
    /// The file (or fd, or here-document delimiter, or here-string).
    pub target: Word,
    /// A here-document's body (as a double-quoted word when it expands).
    pub body: Option<Word>,
}

impl Redir {
    /// Whether the redirection writes its target (a `>&` to a number or `-` duplicates a fd).
    pub fn writes(&self) -> bool {
        match self.op {
            RedirOp::Out | RedirOp::Append | RedirOp::ReadWrite => true,
            RedirOp::DupOut => {
                let t = self.target.literal();
                !(t == "-" || t.chars().all(|c| c.is_ascii_digit()))
            }
            _ => false,
        }
    }
}

impl Word {
    pub fn lit(text: &str, quoted: bool) -> Word {
        Word {
            parts: vec![Part::Lit(text.to_string(), quoted)],
        }
    }

    /// The word's literal text with quotes removed (expansions left out).
    pub fn literal(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(t, _) => s.push_str(t),
                Part::Tilde(u) => {
                    s.push('~');
                    s.push_str(u);
                }
                _ => {}
            }
        }
        s
    }

    /// The word when it is a bare unquoted literal (so it can be a reserved word like `{`).
    pub fn reserved(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(t, false)] => Some(t),
            _ => None,
        }
    }

    /// The scripts this word runs when it is expanded: command and process substitutions,
    /// also inside `${x:-...}`.
    pub fn scripts(&self) -> Vec<&List> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Subst(l, _) | Part::ProcSubst(l) => out.push(l),
                Part::Arith(words) => out.extend(words.iter().flat_map(Word::scripts)),
                Part::Param(Param {
                    op: ParamOp::Default(w) | ParamOp::Alternative(w) | ParamOp::Other(w),
                    ..
                }) => out.extend(w.scripts()),
                _ => {}
            }
        }
        out
    }
}

/// Every word of a list (commands, redirection targets, nested groups), in order.
pub fn list_words(l: &List) -> Vec<Word> {
    let mut out = Vec::new();
    for (pipeline, _) in &l.items {
        for cmd in &pipeline.stages {
            match cmd {
                Cmd::Simple(s) => {
                    out.extend(s.words.iter().cloned());
                    out.extend(s.redirs.iter().map(|r| r.target.clone()));
                }
                Cmd::Group { body, redirs, .. } => {
                    out.extend(list_words(body));
                    out.extend(redirs.iter().map(|r| r.target.clone()));
                }
                Cmd::Function { body, .. } => {
                    let inner = List {
                        items: vec![(
                            Pipeline {
                                stages: vec![(**body).clone()],
                            },
                            Sep::Seq,
                        )],
                    };
                    out.extend(list_words(&inner));
                }
                Cmd::For { words, .. } => out.extend(words.iter().cloned()),
                Cmd::Case { subject } => out.push(subject.clone()),
            }
        }
    }
    out
}
