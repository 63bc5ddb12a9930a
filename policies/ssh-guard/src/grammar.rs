//! The grammar half of the shell reader: tokens from [`crate::lex`] become lists, pipelines,
//! groups and simple commands. Lenient on purpose — a stray `fi` or `)` is skipped — because
//! the point is to find every command, not to validate the script.

use crate::ast::{Cmd, List, Pipeline, Redir, Sep, Simple, Word};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Semi,
    DSemi,
    Amp,
    And,
    Or,
    Pipe,
    LParen,
    RParen,
}

#[derive(Debug)]
pub enum Tok {
    Word(Word),
    Op(Op),
    Redir(Redir),
    Newline,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Closer {
    End,
    Paren,
    Brace,
}

pub struct Parser {
    toks: Vec<Tok>,
    i: usize,
    /// Groups and function bodies open around the cursor.
    depth: usize,
}

/// Nested `( )` / `{ }` beyond this make the line unreadable (and would exhaust the stack).
const MAX_NESTING: usize = 64;

impl Parser {
    pub fn new(toks: Vec<Tok>) -> Parser {
        Parser {
            toks,
            i: 0,
            depth: 0,
        }
    }

    /// The whole token stream as a list.
    pub fn script(mut self) -> Result<List, String> {
        let list = self.list(Closer::End);
        if self.depth > MAX_NESTING {
            return Err("groups nest too deeply".to_string());
        }
        Ok(list)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Word(w)) => w.reserved(),
            _ => None,
        }
    }

    fn take(&mut self) -> Option<Tok> {
        let t = self.toks.get_mut(self.i)?;
        self.i += 1;
        Some(std::mem::replace(t, Tok::Newline))
    }

    fn list(&mut self, closer: Closer) -> List {
        let mut items = Vec::new();
        loop {
            while matches!(
                self.peek(),
                Some(Tok::Newline | Tok::Op(Op::Semi | Op::DSemi | Op::Amp))
            ) {
                self.i += 1;
            }
            match self.peek() {
                None => break,
                Some(Tok::Op(Op::RParen)) => {
                    self.i += 1;
                    if closer == Closer::Paren {
                        break;
                    }
                    continue; // a `case` pattern's `)`, or a stray one
                }
                Some(Tok::Op(Op::And | Op::Or | Op::Pipe)) => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            if closer == Closer::Brace && self.peek_word() == Some("}") {
                self.i += 1;
                break;
            }
            let p = self.pipeline();
            let sep = match self.peek() {
                Some(Tok::Op(Op::Amp)) => Sep::Background,
                Some(Tok::Op(Op::And)) => Sep::And,
                Some(Tok::Op(Op::Or)) => Sep::Or,
                _ => Sep::Seq,
            };
            if matches!(
                self.peek(),
                Some(Tok::Op(Op::Amp | Op::And | Op::Or | Op::Semi | Op::DSemi) | Tok::Newline)
            ) {
                self.i += 1;
            }
            items.push((p, sep));
        }
        List { items }
    }

    fn pipeline(&mut self) -> Pipeline {
        let mut stages = vec![self.command()];
        while matches!(self.peek(), Some(Tok::Op(Op::Pipe))) {
            self.i += 1;
            while matches!(self.peek(), Some(Tok::Newline)) {
                self.i += 1;
            }
            stages.push(self.command());
        }
        Pipeline { stages }
    }

    fn command(&mut self) -> Cmd {
        if self.depth > MAX_NESTING {
            // Give up on the rest; `script` reports the line as unreadable.
            self.i = self.toks.len();
            return Cmd::Simple(Simple::default());
        }
        self.depth += 1;
        let c = self.command_inner();
        if self.depth <= MAX_NESTING {
            self.depth -= 1;
        }
        c
    }

    fn command_inner(&mut self) -> Cmd {
        loop {
            match self.peek_word() {
                Some(
                    "if" | "then" | "else" | "elif" | "while" | "until" | "do" | "!" | "fi"
                    | "done" | "esac" | "coproc",
                ) => self.i += 1,
                Some("{") => {
                    self.i += 1;
                    let body = self.list(Closer::Brace);
                    return Cmd::Group {
                        body,
                        subshell: false,
                        redirs: self.redirs(),
                    };
                }
                Some("function") => {
                    self.i += 1;
                    let name = match self.take() {
                        Some(Tok::Word(w)) => w.literal(),
                        _ => String::new(),
                    };
                    return self.function(name);
                }
                Some(kw @ ("for" | "select" | "case")) => {
                    let is_case = kw == "case";
                    self.i += 1;
                    let head = match self.take() {
                        Some(Tok::Word(w)) => w,
                        _ => Word::default(),
                    };
                    let mut words = Vec::new();
                    while matches!(self.peek(), Some(Tok::Newline)) {
                        self.i += 1;
                    }
                    if self.peek_word() == Some("in") {
                        self.i += 1;
                        while let Some(Tok::Word(_)) = self.peek() {
                            if is_case {
                                break;
                            }
                            if let Some(Tok::Word(w)) = self.take() {
                                words.push(w);
                            }
                        }
                    }
                    return if is_case {
                        Cmd::Case { subject: head }
                    } else {
                        Cmd::For {
                            var: head.literal(),
                            words,
                        }
                    };
                }
                _ => break,
            }
        }
        if let Some(Tok::Op(Op::LParen)) = self.peek() {
            self.i += 1;
            let body = self.list(Closer::Paren);
            return Cmd::Group {
                body,
                subshell: true,
                redirs: self.redirs(),
            };
        }
        let mut s = Simple::default();
        loop {
            match self.peek() {
                Some(Tok::Word(_)) => {
                    if let Some(Tok::Word(w)) = self.take() {
                        s.words.push(w);
                    }
                }
                Some(Tok::Redir(_)) => {
                    if let Some(Tok::Redir(r)) = self.take() {
                        s.redirs.push(r);
                    }
                }
                Some(Tok::Op(Op::LParen))
                    if s.words.len() == 1
                        && matches!(self.toks.get(self.i + 1), Some(Tok::Op(Op::RParen))) =>
                {
                    self.i += 2;
                    let name = s.words[0].literal();
                    return self.function(name);
                }
                _ => break,
            }
        }
        Cmd::Simple(s)
    }

    fn function(&mut self, name: String) -> Cmd {
        if matches!(self.peek(), Some(Tok::Op(Op::LParen)))
            && matches!(self.toks.get(self.i + 1), Some(Tok::Op(Op::RParen)))
        {
            self.i += 2;
        }
        while matches!(self.peek(), Some(Tok::Newline)) {
            self.i += 1;
        }
        Cmd::Function {
            name,
            body: Box::new(self.command()),
        }
    }

    fn redirs(&mut self) -> Vec<Redir> {
        let mut out = Vec::new();
        while let Some(Tok::Redir(_)) = self.peek() {
            if let Some(Tok::Redir(r)) = self.take() {
                out.push(r);
            }
        }
        out
    }
}
