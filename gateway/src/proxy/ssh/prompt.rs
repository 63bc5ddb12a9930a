//! How the gateway knows that the host's shell waits for a command (issue 12.1): a terminal
//! session runs `bash` with a start-up file of the gateway's, whose prompts are markers — an
//! OSC sequence with a random per-channel nonce and the working directory (`PS1`), or `+` for
//! a continuation line (`PS2`). The downstream task takes the markers out of the output
//! before masking and recording; the client sees the gateway's own prompt instead.
//!
//! The start-up file also fixes the host terminal's mode at every prompt: no echo (the
//! gateway echoes), no canonical line editing and no `IEXTEN`/`IXON` special characters, so
//! the bytes of a judged line reach the shell as sent. Only `ISIG` stays on, with its three
//! characters set back to Ctrl-C, Ctrl-\ and Ctrl-Z, so that they reach a running command. A
//! line that would change the terminal's settings or shadow `stty` is refused
//! (`terminal::settings_changed`): `stty intr a` would make the host cut a later line at every
//! `a`.
//!
//! A marker is a claim by whatever prints to the terminal: a command the policy allowed can
//! print one (the nonce can be read inside the shell). What a forged marker gets is the
//! gateway's prompt early: the next line is still judged as a shell command before any byte
//! of it is sent.

use rand::Rng;

/// The start of every marker (`ESC ] 7773 ;`).
const OSC: &[u8] = b"\x1b]7773;";
/// A marker longer than this is not one.
const MAX_MARKER: usize = 4096;
/// The terminal mode the shell reads its lines in (`$__warden_stty` is stty's path, found once
/// at start, so a later `PATH` does not change which program resets the mode).
const STTY: &str = "\"$__warden_stty\" sane -echo -icanon min 1 time 0 -iexten -ixon -ixoff \
                    -istrip -iuclc -inlcr -igncr icrnl -ixany -inpck -parmrk cs8 -parenb isig \
                    intr '^C' quit '^\\' susp '^Z' 2>/dev/null";

/// What the host sent, with markers taken out.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Out(Vec<u8>),
    /// The shell waits for a command in this directory.
    Prompt(String),
    /// The shell waits for the rest of a command.
    Continue,
}

/// Finds the markers of one channel in its output.
#[derive(Debug)]
pub struct Markers {
    nonce: String,
    held: Vec<u8>,
}

impl Markers {
    pub fn new() -> Markers {
        let mut rng = rand::rng();
        let nonce = (0..24)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        Markers {
            nonce,
            held: Vec::new(),
        }
    }

    /// The exec request that starts the shell: bash without the login's start-up files (a
    /// file there is no judged command), without readline (the gateway edits), with the
    /// gateway's start-up file on fd 9.
    pub fn shell_command(&self) -> String {
        let marker = format!("\\e]7773;{};", self.nonce);
        let rc = [
            "__warden_stty=$(command -v stty || echo stty)".to_string(),
            "readonly __warden_stty".into(),
            STTY.to_string(),
            "set +H +o history".into(),
            "unset HISTFILE PS0 PROMPT_COMMAND".into(),
            // Pagers would wait for keys no one sends; `less`, where a target names it as a
            // terminal program, cannot run commands or open other files.
            "export PAGER=cat SYSTEMD_PAGER=cat GIT_PAGER=cat MANPAGER=cat LESSSECURE=1 \
             SYSTEMD_PAGERSECURE=1"
                .into(),
            // One simple command, no function: a RETURN trap (`set -T`) cannot run after it,
            // and a DEBUG trap runs before it.
            format!("PROMPT_COMMAND={}", shell_quote(STTY)),
            format!("PS1='{marker}\\w\\a'"),
            format!("PS2='{marker}+\\a'"),
            "readonly PROMPT_COMMAND PS1 PS2 LESSSECURE SYSTEMD_PAGERSECURE".into(),
        ]
        .join("\n");
        format!(
            "exec bash --noprofile --rcfile /dev/fd/9 --noediting -i 9<<'WARDEN_RC'\n{rc}\nWARDEN_RC\n"
        )
    }

    /// Output bytes, as far as they are known not to start a marker.
    pub fn scan(&mut self, data: &[u8]) -> Vec<Chunk> {
        self.held.extend_from_slice(data);
        let mut chunks = Vec::new();
        loop {
            let Some(start) = find(&self.held, OSC) else {
                // Keep what could be the start of a marker.
                let keep = (1..OSC.len())
                    .rev()
                    .find(|&n| self.held.ends_with(&OSC[..n]))
                    .unwrap_or(0);
                let out: Vec<u8> = self.held.drain(..self.held.len() - keep).collect();
                if !out.is_empty() {
                    chunks.push(Chunk::Out(out));
                }
                return chunks;
            };
            if start > 0 {
                chunks.push(Chunk::Out(self.held.drain(..start).collect()));
            }
            let Some(end) = self.held.iter().position(|&b| b == 0x07) else {
                if self.held.len() > MAX_MARKER {
                    chunks.push(Chunk::Out(std::mem::take(&mut self.held)));
                }
                return chunks;
            };
            let marker: Vec<u8> = self.held.drain(..=end).collect();
            let body = String::from_utf8_lossy(&marker[OSC.len()..marker.len() - 1]).into_owned();
            match body.split_once(';') {
                Some((nonce, "+")) if nonce == self.nonce => chunks.push(Chunk::Continue),
                // The directory is host output shown to the client: card numbers in it are
                // masked like any (`cd /data/4111...` must not show them in the prompt).
                Some((nonce, dir)) if nonce == self.nonce => {
                    let shown: String = dir
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .take(200)
                        .collect();
                    chunks.push(Chunk::Prompt(crate::session::scrub(&shown)));
                }
                // Someone else's OSC 7773: output like any other.
                _ => chunks.push(Chunk::Out(marker)),
            }
        }
    }
}

/// `text` in single quotes for the shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_across_packets_and_forgeries_are_output() {
        let mut m = Markers::new();
        let marker = format!("\x1b]7773;{};/srv\x07", m.nonce);
        let text = format!("out\r\n{marker}");
        let (a, b) = text.as_bytes().split_at(8);
        let mut chunks = m.scan(a);
        chunks.extend(m.scan(b));
        assert_eq!(
            chunks,
            vec![
                Chunk::Out(b"out\r\n".to_vec()),
                Chunk::Prompt("/srv".into())
            ]
        );
        let cont = format!("\x1b]7773;{};+\x07x", m.nonce);
        assert_eq!(
            m.scan(cont.as_bytes()),
            vec![Chunk::Continue, Chunk::Out(b"x".to_vec())]
        );
        let forged = b"\x1b]7773;guess;/\x07";
        assert_eq!(m.scan(forged), vec![Chunk::Out(forged.to_vec())]);
        // A directory name with control characters is shown without them.
        let odd = format!("\x1b]7773;{};/tmp/\x1b[2J\x07", m.nonce);
        assert_eq!(
            m.scan(odd.as_bytes()),
            vec![Chunk::Prompt("/tmp/?[2J".into())]
        );
    }
}
