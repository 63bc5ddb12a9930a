//! Cells per second of `mask_pans` on the cells a policy sees, and MB/s of `StreamMasker` on
//! terminal output: `cargo bench -p warden-pan --bench speed`. No criterion: a timing loop,
//! best of five rounds, so it runs anywhere the crate builds.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// A text cell of about 1 KiB with one PAN in the middle and some other numbers.
fn kib_text() -> String {
    let para = "The customer called on 2026-12-05 at 09:31 about order 112-5639922-3677971. \
                She asked for a refund of 129.90 EUR to the card she paid with; the agent \
                checked ticket 48213 and the delivery (tracking 1Z999AA10123456784). ";
    let mut text = para.repeat(3);
    text += "Card: 4111 1111 1111 1111, exp 12/29. ";
    while text.len() < 1024 {
        text += para;
    }
    text.truncate(1024);
    text
}

/// 64 KiB of `ls --color`-like terminal output with one PAN in it.
fn terminal_output() -> String {
    let line = "\x1b[0m\x1b[01;34mreports\x1b[0m  \x1b[01;32mrun.sh\x1b[0m  2026-12-05 09:31  4096 \
                invoices-2026.csv  12345 bytes\r\n";
    let mut text = line.repeat(300);
    text += "grep: \x1b[01;31m\x1b[K4111111111111111\x1b[m\x1b[K\r\n";
    while text.len() < 64 * 1024 {
        text += line;
    }
    text.truncate(64 * 1024);
    text
}

/// Calls per second of `f(input)`, best of five rounds of about 0.2 s.
fn rate(input: &str, f: &dyn Fn(&str) -> usize) -> f64 {
    let mut calls = 1u64;
    loop {
        let started = Instant::now();
        for _ in 0..calls {
            black_box(f(black_box(input)));
        }
        if started.elapsed() > Duration::from_millis(50) {
            break;
        }
        calls *= 2;
    }
    calls *= 4;
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                black_box(f(black_box(input)));
            }
            calls as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument keeps only the rows it names
    // (`cargo bench -p warden-pan --bench speed -- "one PAN"`).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let kib = kib_text();
    let output = terminal_output();
    let cells: [(&str, &str); 5] = [
        ("short cell, no digits", "alice@example.com"),
        ("20-char cell, a few digits", "order 1234 at 10:30 "),
        ("cell with one PAN", "4111 1111 1111 1111"),
        (
            "timestamp cell (13+ digits, no PAN)",
            "2026-12-05 09:31:06.123456+00",
        ),
        ("1 KiB text cell with one PAN", &kib),
    ];
    let mask = |s: &str| warden_pan::mask_pans(s).map_or(0, |m| m.len());
    println!("| input | bytes | call | rate | ns/call |");
    println!("| --- | ---: | --- | ---: | ---: |");
    for (name, cell) in cells.into_iter().filter(|(name, _)| wanted(name)) {
        let r = rate(cell, &mask);
        println!(
            "| {name} | {} | mask_pans | {:.2e} cells/s | {:.0} |",
            cell.len(),
            r,
            1e9 / r
        );
    }
    // Terminal output through a stream masker in 64 KiB pieces, and scrubbed at once.
    let stream = |s: &str| {
        let mut masker = warden_pan::StreamMasker::new();
        masker.push(s).len() + masker.finish().len()
    };
    let scrub = |s: &str| warden_pan::scrub(s).len();
    for (name, f) in [
        ("StreamMasker::push", &stream as &dyn Fn(&str) -> usize),
        ("scrub", &scrub),
    ] {
        if !wanted("64 KiB terminal output") {
            break;
        }
        let r = rate(&output, f);
        println!(
            "| 64 KiB terminal output, one PAN | {} | {name} | {:.0} MB/s | {:.0} |",
            output.len(),
            r * output.len() as f64 / 1e6,
            1e9 / r
        );
    }
}
