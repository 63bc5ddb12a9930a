//! The detector against a generated corpus: false negatives on true PANs written every way
//! the crate docs promise, false positives on realistic look-alikes. Prints the table
//! (`cargo test -p warden-pan corpus -- --nocapture`) and asserts only what must hold:
//!
//! - every true PAN of every asserted category is masked (all its digits but the last four);
//! - false positives stay under the bound stated for their category in `FP_BOUNDS`.
//!
//! The corpus is generated, not stored: `gen.rs` with a fixed seed, so it is the same on
//! every run and every machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod r#gen;

use r#gen::{LOOK_ALIKES, PAN_CATEGORIES, PAN_LIMITS, Rng, Sample};
use warden_pan::{StreamMasker, find_pans, mask_pans};

const SEED: u64 = 0x5EED_CA4D_2026_1205;
/// Samples per true-PAN category and per look-alike category.
const PAN_SAMPLES: usize = 2_000;
const LOOK_ALIKE_SAMPLES: usize = 5_000;

/// Highest false-positive rate (percent) allowed per look-alike category; categories not
/// listed must stay under 0.5%. Random 13-19 digit numbers pass Luhn one time in ten and fit
/// a scheme about one time in three; grouped USPS numbers hold 16-digit windows that start
/// with 9 (national schemes); long runs are what searching inside runs costs: about 2.4% of
/// all windows pass Luhn and fit a scheme, and a run of n digits has 7(n-15) windows.
const FP_BOUNDS: [(&str, f64); 3] = [
    ("random ids, 13-19 digits", 5.0),
    ("tracking numbers (UPS, FedEx, USPS)", 5.0),
    ("long random digit runs (20-64)", 100.0),
];

/// Whether `sample`'s PANs are all masked in `masked`: every digit but the last four.
fn missed(sample: &Sample, masked: &str) -> usize {
    let out: Vec<char> = masked.chars().collect();
    sample
        .pans
        .iter()
        .filter(|digits| {
            let hide = digits.len().saturating_sub(4);
            digits[..hide].iter().any(|&k| out.get(k) != Some(&'*'))
        })
        .count()
}

/// `text` through a [`StreamMasker`] in random pieces.
fn streamed(rng: &mut Rng, text: &str) -> String {
    let mut masker = StreamMasker::new();
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = 1 + rng.below(rest.len().min(24));
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out += &masker.push(piece);
        rest = tail;
    }
    out + &masker.finish()
}

struct Row {
    name: String,
    samples: usize,
    bad: usize,
}

impl Row {
    fn rate(&self) -> f64 {
        100.0 * self.bad as f64 / self.samples as f64
    }
}

fn print(title: &str, what: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("| category | samples | {what} | rate |");
    println!("| --- | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2}% |",
            r.name,
            r.samples,
            r.bad,
            r.rate()
        );
    }
}

#[test]
fn corpus_false_negatives_and_false_positives() {
    let mut rng = Rng::new(SEED);

    let mut negatives = Vec::new();
    for (name, generate) in PAN_CATEGORIES.iter().chain(PAN_LIMITS.iter()) {
        let mut row = Row {
            name: name.to_string(),
            samples: 0,
            bad: 0,
        };
        for _ in 0..PAN_SAMPLES {
            let sample = generate(&mut rng);
            let masked = mask_pans(&sample.text).unwrap_or_else(|| sample.text.clone());
            row.samples += sample.pans.len();
            row.bad += missed(&sample, &masked);
        }
        negatives.push(row);
    }
    // Every asserted category once more, cut into random pieces and streamed.
    let mut row = Row {
        name: "all of the above, streamed in 1-24 byte pieces".into(),
        samples: 0,
        bad: 0,
    };
    for (_, generate) in PAN_CATEGORIES {
        for _ in 0..PAN_SAMPLES / 4 {
            let sample = generate(&mut rng);
            let masked = streamed(&mut rng, &sample.text);
            row.samples += sample.pans.len();
            row.bad += missed(&sample, &masked);
        }
    }
    negatives.push(row);

    let mut positives = Vec::new();
    for (name, generate) in LOOK_ALIKES {
        let mut row = Row {
            name: name.to_string(),
            samples: LOOK_ALIKE_SAMPLES,
            bad: 0,
        };
        let mut example = None;
        for _ in 0..LOOK_ALIKE_SAMPLES {
            let text = generate(&mut rng);
            if !find_pans(&text).is_empty() {
                row.bad += 1;
                example.get_or_insert(text);
            }
        }
        if let Some(text) = example {
            println!(
                "{name}: e.g. {text:?} -> {:?}",
                mask_pans(&text).unwrap_or_default()
            );
        }
        positives.push(row);
    }

    print(
        "False negatives (true PANs not masked)",
        "missed",
        &negatives,
    );
    print(
        "False positives (texts with a PAN reported)",
        "flagged",
        &positives,
    );

    for row in &negatives {
        if !row.name.starts_with("limit:") {
            assert_eq!(row.bad, 0, "{}: missed PANs", row.name);
        }
    }
    for row in &positives {
        let bound = FP_BOUNDS
            .iter()
            .find(|(name, _)| *name == row.name)
            .map_or(0.5, |(_, bound)| *bound);
        assert!(
            row.rate() <= bound,
            "{}: {:.2}% > {bound}%",
            row.name,
            row.rate()
        );
    }
}

#[test]
fn corpus_generator_is_sound() {
    for pan in r#gen::TEST_CARDS {
        assert!(r#gen::luhn(pan), "{pan}");
    }
    let mut rng = Rng::new(1);
    for _ in 0..1000 {
        let pan = r#gen::random_pan(&mut rng);
        assert!(r#gen::luhn(&pan) && (13..=19).contains(&pan.len()), "{pan}");
    }
    // The IBAN check digits of a published example come out right.
    let (_, generate) = LOOK_ALIKES
        .iter()
        .find(|(n, _)| *n == "IBANs, compact")
        .unwrap();
    let iban = generate(&mut rng);
    assert!(iban.len() >= 18, "{iban}");
}
