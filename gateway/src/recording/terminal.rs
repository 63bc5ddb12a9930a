//! Replay of SSH transcripts: exec sessions as a readable transcript (`$ command`, warden's
//! verdict, the output, the exit status), terminal sessions as the screen the client saw, with
//! the pauses that [`delays`] computes, and both as an asciicast v2 file for `asciinema play`.
//!
//! Everything here is a pure function of the decoded lines, so it is tested without a terminal
//! or a clock; `cli/replay.rs` does the sleeping and the writing.
//!
//! # Exec and terminal parts
//! A transcript is read in order. Until its first `terminal` entry it is an exec session: no
//! screen to reproduce, so each `command` becomes a `$ text` line, a verdict other than a plain
//! allow a `# warden: verdict (reason)` line, output (stdout and stderr, in the order they came)
//! is shown as is, `exit` becomes `# exit status N`, and the gateway's own messages (`error`,
//! `notice`) `# warden: ...` lines, marked so they are not mistaken for the command's output.
//! From a `terminal` entry on, the client's screen was the pty: its output is played as it
//! came, and so are `error` and `notice` messages, which the gateway wrote to the terminal as
//! CR LF ended lines; every other entry is left out of the picture.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{Entry, Line, LineError};

/// A decoded transcript, as [`super::parse_transcript`] returns it.
pub type Transcript = [Result<Line<'static>, LineError>];

/// The asciicast size used when no pty was granted.
const EXEC_SIZE: (u32, u32) = (80, 24);

/// The pty a session was granted first, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalInfo {
    pub width: u32,
    pub height: u32,
    pub term: String,
}

/// The first `terminal` entry: `None` for a session that never had a pty.
pub fn terminal_info(lines: &Transcript) -> Option<TerminalInfo> {
    lines.iter().find_map(|line| match line {
        Ok(Line {
            entry:
                Entry::Terminal {
                    width,
                    height,
                    term,
                },
            ..
        }) => Some(TerminalInfo {
            width: *width,
            height: *height,
            term: term.to_string(),
        }),
        _ => None,
    })
}

/// Whether the lines hold entries only an SSH session writes (for recordings whose session
/// record is missing, so the protocol is not known).
pub fn looks_like_ssh(lines: &Transcript) -> bool {
    lines.iter().flatten().any(|line| {
        matches!(
            line.entry,
            Entry::Terminal { .. }
                | Entry::Output { .. }
                | Entry::Input { .. }
                | Entry::Resize { .. }
                | Entry::Exit { .. }
        )
    })
}

/// Something that happened on the client's screen or keyboard, `t` microseconds in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub t: u64,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Text shown: terminal output as recorded, or an exec part rendered as text.
    Output(String),
    /// A line the user submitted in a terminal.
    Input(String),
    /// The terminal's new size.
    Resize { width: u32, height: u32 },
}

/// The whole session as text, without timing: an exec session's transcript, or what a
/// terminal showed, all at once. Lines end in `\n` as recorded.
pub fn render_ssh(lines: &Transcript) -> String {
    playback(lines).into_iter().map(|(_, text)| text).collect()
}

/// What to write to the screen, and when (microseconds since the recording started).
pub fn playback(lines: &Transcript) -> Vec<(u64, String)> {
    frames(lines, false)
        .into_iter()
        .filter_map(|frame| match frame.event {
            Event::Output(text) => Some((frame.t, text)),
            Event::Input(_) | Event::Resize { .. } => None,
        })
        .collect()
}

/// The transcript as screen events. `crlf` ends the lines warden renders (and bare `\n` in an
/// exec command's output) with `\r\n`, as a raw-mode terminal needs; terminal output already
/// has them.
pub fn frames(lines: &Transcript, crlf: bool) -> Vec<Frame> {
    let mut b = Builder {
        frames: Vec::new(),
        crlf,
        size: None,
        line_start: true,
    };
    for line in lines {
        match line {
            Ok(line) => b.entry(line.t, &line.entry),
            // Inside a terminal an inserted line would garble the screen; the caller reports
            // unreadable lines on its own.
            Err(err) if b.size.is_none() => {
                let t = b.frames.last().map_or(0, |f| f.t);
                b.comment(t, &format!("warden: unreadable {err}"));
            }
            Err(_) => {}
        }
    }
    b.frames
}

struct Builder {
    frames: Vec<Frame>,
    crlf: bool,
    /// The terminal's size once a pty was granted; `None` in the exec part.
    size: Option<(u32, u32)>,
    /// Whether the exec text so far ends a line, so a `#` line starts on its own.
    line_start: bool,
}

impl Builder {
    fn entry(&mut self, t: u64, entry: &Entry<'static>) {
        if let Entry::Terminal { width, height, .. } = entry {
            let size = (*width, *height);
            // A later pty (another channel) of another size is a resize for the player.
            if self.size.is_some_and(|old| old != size) {
                self.push(
                    t,
                    Event::Resize {
                        width: size.0,
                        height: size.1,
                    },
                );
            }
            if self.size.is_none() && !self.line_start {
                self.text(t, "\n");
            }
            self.size = Some(size);
            return;
        }
        match entry {
            Entry::Input { data } => self.push(t, Event::Input(data.to_string())),
            Entry::Resize { width, height } => {
                if self.size.is_some() {
                    self.size = Some((*width, *height));
                }
                self.push(
                    t,
                    Event::Resize {
                        width: *width,
                        height: *height,
                    },
                );
            }
            Entry::Output { data, .. } if self.size.is_some() => {
                self.push(t, Event::Output(data.to_string()));
            }
            // As the gateway writes them to a pty.
            Entry::Error { message } | Entry::Notice { message } if self.size.is_some() => {
                self.push(t, Event::Output(format!("{message}\r\n")));
            }
            // Everything below is the exec part's text.
            _ if self.size.is_some() => {}
            Entry::Output { data, .. } => self.text(t, data),
            Entry::Command {
                text,
                verdict,
                reason,
            } => {
                self.end_line(t);
                let mut header = String::new();
                for (i, line) in text.trim_end().split('\n').enumerate() {
                    let mark = if i == 0 { '$' } else { '>' };
                    let _ = writeln!(header, "{mark} {line}");
                }
                self.text(t, &header);
                match (verdict.as_ref(), reason) {
                    ("allow", None) => {}
                    (verdict, Some(reason)) => {
                        self.comment(t, &format!("warden: {verdict} ({reason})"));
                    }
                    (verdict, None) => self.comment(t, &format!("warden: {verdict}")),
                }
            }
            Entry::Exit { status, signal } => {
                let line = match (signal, status) {
                    (Some(signal), _) => format!("killed by signal {signal}"),
                    (None, Some(status)) => format!("exit status {status}"),
                    (None, None) => "exited without a status".to_owned(),
                };
                self.comment(t, &line);
            }
            // SSH messages carry their own `warden:` (it is how the client saw them).
            Entry::Error { message } | Entry::Notice { message }
                if message.starts_with("warden:") =>
            {
                self.comment(t, message);
            }
            Entry::Error { message } | Entry::Notice { message } => {
                self.comment(t, &format!("warden: {message}"));
            }
            _ => {}
        }
    }

    /// `# text`, one `#` per line, on a line of its own.
    fn comment(&mut self, t: u64, text: &str) {
        self.end_line(t);
        let mut out = String::new();
        for line in text.trim_end().split('\n') {
            let _ = writeln!(out, "# {line}");
        }
        self.text(t, &out);
    }

    fn end_line(&mut self, t: u64) {
        if !self.line_start {
            self.text(t, "\n");
        }
    }

    /// Exec-part text, with `\n` turned into `\r\n` when asked.
    fn text(&mut self, t: u64, text: &str) {
        if text.is_empty() {
            return;
        }
        self.line_start = text.ends_with('\n');
        let text = if self.crlf {
            crlf(text)
        } else {
            text.to_owned()
        };
        // Several pieces at the same moment (a header and its verdict) are one write.
        if let Some(Frame {
            t: last_t,
            event: Event::Output(last),
        }) = self.frames.last_mut()
            && *last_t == t
        {
            last.push_str(&text);
            return;
        }
        self.push(t, Event::Output(text));
    }

    fn push(&mut self, t: u64, event: Event) {
        self.frames.push(Frame { t, event });
    }
}

/// Every `\n` not already preceded by `\r` becomes `\r\n`.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// How to pace a playback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// 2.0 plays twice as fast as recorded. Must be positive.
    pub speed: f64,
    /// No pause is longer than this (before the speed applies, as in asciinema); `None` keeps
    /// every pause.
    pub idle_limit: Option<Duration>,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            speed: 1.0,
            idle_limit: Some(Duration::from_secs(2)),
        }
    }
}

/// How long to wait before each event at the times `times` (microseconds since the recording
/// started, so the first wait is from the start): each gap capped at the idle limit, then
/// divided by the speed. Times that go backwards (two tasks recording at once) wait nothing.
/// A speed that is not a positive number waits nothing at all.
pub fn delays(times: impl IntoIterator<Item = u64>, pacing: Pacing) -> Vec<Duration> {
    let mut prev = 0;
    times
        .into_iter()
        .map(|t| {
            let mut gap = Duration::from_micros(t.saturating_sub(prev));
            prev = prev.max(t);
            if let Some(limit) = pacing.idle_limit {
                gap = gap.min(limit);
            }
            Duration::try_from_secs_f64(gap.as_secs_f64() / pacing.speed).unwrap_or_default()
        })
        .collect()
}

/// What an asciicast's header says besides the size, which comes from the transcript.
#[derive(Debug, Clone, Default)]
pub struct CastOptions<'a> {
    /// The recording's start, Unix seconds (from the `start` entry when `None`).
    pub timestamp: Option<u64>,
    /// `idle_time_limit`: players cap pauses at this many seconds.
    pub idle_time_limit: Option<f64>,
    pub title: Option<&'a str>,
}

#[derive(Serialize)]
struct CastHeader<'a> {
    version: u32,
    width: u32,
    height: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_time_limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<CastEnv<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct CastEnv<'a> {
    term: &'a str,
}

/// The transcript as an asciicast v2 file (<https://docs.asciinema.org/manual/asciicast/v2/>):
/// a header line, then `[seconds, code, data]` lines: `o` for output (stderr too; an exec part
/// rendered as text), `i` for submitted lines, `r` for resizes. Times are as recorded;
/// [`CastOptions::idle_time_limit`] asks the player to cap pauses.
pub fn asciicast(
    lines: &Transcript,
    options: &CastOptions<'_>,
) -> Result<String, serde_json::Error> {
    let terminal = terminal_info(lines);
    let (width, height) = terminal.as_ref().map_or(EXEC_SIZE, |t| (t.width, t.height));
    let timestamp = options.timestamp.or_else(|| {
        lines.iter().flatten().find_map(|line| match &line.entry {
            Entry::Start { time, .. } => Some(time.unix_micros() / 1_000_000),
            _ => None,
        })
    });
    let header = CastHeader {
        version: 2,
        width,
        height,
        timestamp,
        idle_time_limit: options.idle_time_limit,
        env: terminal.as_ref().map(|t| CastEnv { term: &t.term }),
        title: options.title,
    };
    let mut out = serde_json::to_string(&header)?;
    out.push('\n');
    let mut at = 0;
    for frame in frames(lines, true) {
        // Players expect times that never go back.
        at = at.max(frame.t);
        let secs = at as f64 / 1e6;
        let event = match &frame.event {
            Event::Output(text) => serde_json::to_string(&(secs, "o", text))?,
            Event::Input(text) => serde_json::to_string(&(secs, "i", text))?,
            Event::Resize { width, height } => {
                serde_json::to_string(&(secs, "r", format!("{width}x{height}")))?
            }
        };
        out.push_str(&event);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::parse_transcript;
    use super::*;

    fn parse(jsonl: &str) -> Vec<Result<Line<'static>, LineError>> {
        parse_transcript(&[jsonl.as_bytes().to_vec()])
    }

    const EXEC: &str = concat!(
        r#"{"t":0,"type":"start","version":1,"time":"2025-06-01T10:00:00.000000Z"}"#,
        "\n",
        r#"{"t":100,"type":"command","text":"ls /srv","verdict":"allow"}"#,
        "\n",
        r#"{"t":200,"type":"output","stream":"o","data":"a\nb\n"}"#,
        "\n",
        r#"{"t":250,"type":"output","stream":"e","data":"ls: warning\n"}"#,
        "\n",
        r#"{"t":300,"type":"exit","status":0}"#,
        "\n",
        r#"{"t":400,"type":"command","text":"cat /etc/shadow","verdict":"deny","reason":"ssh-guard: no"}"#,
        "\n",
        r#"{"t":401,"type":"error","message":"warden: denied: ssh-guard: no"}"#,
        "\n",
        r#"{"t":410,"type":"exit","signal":"KILL"}"#,
        "\n",
        r#"{"t":420,"type":"notice","message":"bye\nnow"}"#,
        "\n",
    );

    #[test]
    fn exec_sessions_render_as_a_transcript() {
        let lines = parse(EXEC);
        assert_eq!(terminal_info(&lines), None);
        assert!(looks_like_ssh(&lines));
        assert_eq!(
            render_ssh(&lines),
            "$ ls /srv\na\nb\nls: warning\n# exit status 0\n$ cat /etc/shadow\n\
             # warden: deny (ssh-guard: no)\n# warden: denied: ssh-guard: no\n\
             # killed by signal KILL\n# warden: bye\n# now\n"
        );
    }

    #[test]
    fn terminal_sessions_play_output_and_refusals() {
        let lines = parse(concat!(
            r#"{"t":0,"type":"start","version":1,"time":"2025-06-01T10:00:00.000000Z"}"#,
            "\n",
            r#"{"t":5,"type":"terminal","width":100,"height":30,"term":"xterm"}"#,
            "\n",
            r#"{"t":10,"type":"output","stream":"o","data":"$ "}"#,
            "\n",
            r#"{"t":20,"type":"input","data":"ls\r"}"#,
            "\n",
            r#"{"t":21,"type":"command","text":"rm -rf /","verdict":"deny","reason":"no"}"#,
            "\n",
            r#"{"t":22,"type":"error","message":"warden: denied: no"}"#,
            "\n",
            r#"{"t":23,"type":"notice","message":"approved by bob: ok"}"#,
            "\n",
            r#"{"t":24,"type":"output","stream":"o","data":"^C\r\n$ "}"#,
            "\n",
            r#"{"t":30,"type":"resize","width":120,"height":40}"#,
            "\n",
            "garbage\n",
            r#"{"t":40,"type":"exit","status":0}"#,
            "\n",
        ));
        let info = terminal_info(&lines).unwrap();
        assert_eq!(
            (info.width, info.height, info.term.as_str()),
            (100, 30, "xterm")
        );
        assert_eq!(
            playback(&lines),
            [
                (10, "$ ".to_owned()),
                (22, "warden: denied: no\r\n".to_owned()),
                (23, "approved by bob: ok\r\n".to_owned()),
                (24, "^C\r\n$ ".to_owned())
            ]
        );
        let events: Vec<_> = frames(&lines, true).into_iter().map(|f| f.event).collect();
        assert_eq!(events[1], Event::Input("ls\r".into()));
        assert_eq!(
            events[5],
            Event::Resize {
                width: 120,
                height: 40
            }
        );
        assert_eq!(events.len(), 6);
    }

    #[test]
    fn crlf_leaves_existing_pairs_alone() {
        assert_eq!(crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
        let text: String = frames(&parse(EXEC), true)
            .into_iter()
            .map(|f| match f.event {
                Event::Output(text) => text,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(text.starts_with("$ ls /srv\r\na\r\nb\r\nls: warning\r\n# exit status 0\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'), "{text:?}");
    }

    #[test]
    fn delays_cap_idle_time_then_apply_the_speed() {
        let times = [
            500_000, 1_500_000, 11_500_000, 11_750_000, 11_000_000, 12_000_000,
        ];
        let ms = |d: &[Duration]| d.iter().map(Duration::as_millis).collect::<Vec<_>>();
        let pacing = Pacing {
            speed: 2.0,
            idle_limit: Some(Duration::from_secs(2)),
        };
        // Gaps: 0.5 s from the start, 1 s, 10 s (capped to 2), 0.25 s, backwards, 0.25 s.
        assert_eq!(ms(&delays(times, pacing)), [250, 500, 1000, 125, 0, 125]);
        let unlimited = Pacing {
            speed: 1.0,
            idle_limit: None,
        };
        assert_eq!(
            ms(&delays(times, unlimited)),
            [500, 1000, 10_000, 250, 0, 250]
        );
        let half = Pacing {
            speed: 0.5,
            ..Pacing::default()
        };
        assert_eq!(ms(&delays([3_000_000], half)), [4000]);
        let broken = Pacing {
            speed: 0.0,
            idle_limit: None,
        };
        assert_eq!(ms(&delays([1_000_000], broken)), [0]);
    }

    #[test]
    fn asciicast_header_and_events() {
        let cast = asciicast(
            &parse(EXEC),
            &CastOptions {
                idle_time_limit: Some(1.5),
                title: Some("t"),
                ..CastOptions::default()
            },
        )
        .unwrap();
        let lines: Vec<serde_json::Value> = cast
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"version": 2, "width": 80, "height": 24,
                "timestamp": 1_748_772_000, "idle_time_limit": 1.5, "title": "t"})
        );
        assert_eq!(lines[1], serde_json::json!([0.0001, "o", "$ ls /srv\r\n"]));
        assert_eq!(lines[2], serde_json::json!([0.0002, "o", "a\r\nb\r\n"]));
    }
}
