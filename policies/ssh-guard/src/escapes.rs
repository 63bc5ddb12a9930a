//! C-style backslash escapes, as `$'...'`, `printf` and `echo -e` decode them.

/// Decode C-style backslash escapes (`$'...'`, `printf`, `echo -e`).
pub fn decode_escapes(raw: &str) -> String {
    let c: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let digits = |i: usize, max: usize, radix: u32| -> (u32, usize) {
        let mut v = 0u32;
        let mut n = 0;
        while n < max && i + n < c.len() && c[i + n].is_digit(radix) {
            v = v * radix + c[i + n].to_digit(radix).unwrap_or(0);
            n += 1;
        }
        (v, n)
    };
    while i < c.len() {
        if c[i] != '\\' || i + 1 >= c.len() {
            out.push(c[i]);
            i += 1;
            continue;
        }
        i += 1;
        let e = c[i];
        i += 1;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'e' | 'E' => Some('\x1b'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' | '\'' | '"' | '?' => Some(e),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let (radix, max, skip0) = match e {
            'x' => (16, 2, false),
            'u' => (16, 4, false),
            'U' => (16, 8, false),
            '0'..='7' => (8, 3, true),
            _ => {
                out.push('\\');
                out.push(e);
                continue;
            }
        };
        if skip0 {
            i -= 1;
            // `\0NNN` (echo) and `\NNN` (printf, $'') are both octal.
            if c[i] == '0' && i + 1 < c.len() && c[i + 1].is_digit(8) {
                i += 1;
            }
        }
        let (v, n) = digits(i, max, radix);
        if n == 0 {
            out.push('\\');
            out.push(e);
            continue;
        }
        i += n;
        out.extend(char::from_u32(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode() {
        assert_eq!(
            decode_escapes(r"\x72\x6d \162\155 \0101 \u00e9 \q"),
            "rm rm A é \\q"
        );
    }
}
