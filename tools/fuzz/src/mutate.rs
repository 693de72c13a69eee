//! A seeded mutation fuzzer that runs on stable Rust: it takes inputs from
//! a corpus, changes them the ways that break parsers (bits, bytes, cut and
//! repeated ranges, splices of two inputs, tokens of the movement format,
//! extreme numbers, deep nesting), and hands each to a target. It is not
//! coverage-guided (libFuzzer is, on nightly; see `tools/fuzz/README.md`),
//! but it is repeatable: the same seed tries the same inputs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The longest input tried: well past any line worth reading, far below
/// the limits that are tested on their own (1 MiB lines, 16 MiB bodies).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Tokens of the movement format and the values that break readers.
const DICTIONARY: &[&str] = &[
    "\"type\"",
    "\"manual\"",
    "\"date\"",
    "\"id\"",
    "\"qty\"",
    "\"material\"",
    "\"product\"",
    "\"declaration\"",
    "\"mode\"",
    "\"lines\"",
    "\"materials\"",
    "\"products\"",
    "\"issued\"",
    "\"net\"",
    "\"loss_rate\"",
    "\"bonded_share\"",
    "\"counterpart\"",
    "\"declared_remaining\"",
    "\"movement\"",
    "\"findings\"",
    "\"reverses\"",
    "\"rule\"",
    "\"event\"",
    "\"version\"",
    "\"manual_registered\"",
    "\"material_imported\"",
    "\"product_exported\"",
    "\"reversed\"",
    "\"carryover_out\"",
    "\"domestic_sale\"",
    "\"work_order_completed\"",
    "\"reported\"",
    "\"C31012600042\"",
    "\"2026-02-29\"",
    "\"2024-02-29\"",
    "\"9999-12-31\"",
    "\"0000-01-01\"",
    "\"0615\"",
    "\"0214\"",
    "\"1\"",
    "\"0\"",
    "\"-0\"",
    "\"-1\"",
    "\"0.000001\"",
    "\"1e3\"",
    "\"79228162514264337593543950335\"",
    "\"79228162514264337593543950336\"",
    "\"0.0000000000000000000000000001\"",
    "\"123456789012345678901234567890\"",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "0.5",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\\"\"",
    "[[[[[[[[[[[[[[[[",
    "]]]]]]]]",
    "{\"a\":{\"a\":{\"a\":",
    ",",
    ":",
    "\n",
    "\r\n",
    "#",
    " ",
];

/// What the runner found: the input a target panicked on, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub input: Vec<u8>,
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub executions: u64,
    pub elapsed: Duration,
}

/// How long one input may take before the run is stopped as hung.
pub const HANG_AFTER: Duration = Duration::from_secs(10);

/// Runs `target` on every corpus input, then on mutated inputs until
/// `executions` were tried or `budget` ran out. Stops at the first panic;
/// an input that takes longer than [`HANG_AFTER`] aborts the process with
/// the input printed (a hang cannot be unwound).
pub fn run(
    target: crate::Target,
    corpus: &[Vec<u8>],
    seed: u64,
    executions: u64,
    budget: Duration,
) -> Result<Summary, Failure> {
    let started = Instant::now();
    let watchdog = Watchdog::start();
    let tried = std::cell::Cell::new(0u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let empty = [Vec::new()];
    let corpus = if corpus.is_empty() {
        &empty[..]
    } else {
        corpus
    };
    let try_one = |input: &[u8]| -> Result<(), Failure> {
        tried.set(tried.get() + 1);
        watchdog.begin(input);
        let outcome = catch_unwind(AssertUnwindSafe(|| target(input)));
        watchdog.end();
        outcome.map_err(|panic| Failure {
            input: input.to_vec(),
            message: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".into()),
        })
    };
    for input in corpus {
        try_one(input)?;
    }
    while tried.get() < executions && started.elapsed() < budget {
        let base = &corpus[rng.random_range(0..corpus.len())];
        let other = &corpus[rng.random_range(0..corpus.len())];
        let input = mutate(&mut rng, base, other);
        try_one(&input)?;
    }
    Ok(Summary {
        executions: tried.get(),
        elapsed: started.elapsed(),
    })
}

/// One to four changes to `base`, some drawing on `other`.
pub fn mutate(rng: &mut StdRng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut input = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = |rng: &mut StdRng, input: &[u8]| rng.random_range(0..=input.len());
        match rng.random_range(0..9) {
            0 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] = *b"\0\xff\"{}[],:\\\n09-.e "
                    .get(rng.random_range(0..16))
                    .unwrap_or(&b'0');
            }
            2 | 3 => {
                let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())].as_bytes();
                let i = at(rng, &input);
                input.splice(i..i, token.iter().copied());
            }
            4 if !input.is_empty() => {
                let from = rng.random_range(0..input.len());
                let to = (from + rng.random_range(1..=16)).min(input.len());
                input.drain(from..to);
            }
            5 if !input.is_empty() => {
                let from = rng.random_range(0..input.len());
                let to = (from + rng.random_range(1..=64)).min(input.len());
                let copy = input[from..to].to_vec();
                let i = at(rng, &input);
                input.splice(i..i, copy);
            }
            6 => {
                let cut = at(rng, &input);
                let from = rng.random_range(0..=other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            7 => replace_a_string_value(rng, &mut input),
            _ => {
                let depth = rng.random_range(1..=2000);
                let i = at(rng, &input);
                let open = if rng.random_bool(0.5) { b'[' } else { b'{' };
                input.splice(i..i, std::iter::repeat_n(open, depth));
            }
        }
    }
    input.truncate(MAX_INPUT_BYTES);
    input
}

/// Puts a dictionary token where a JSON string value stood.
fn replace_a_string_value(rng: &mut StdRng, input: &mut Vec<u8>) {
    let quotes: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'"')
        .map(|(i, _)| i)
        .collect();
    if quotes.len() < 2 {
        return;
    }
    let first = rng.random_range(0..quotes.len() - 1);
    let (from, to) = (quotes[first], quotes[first + 1]);
    let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())].as_bytes();
    input.splice(from..=to, token.iter().copied());
}

/// Stops the process when one input runs too long, printing it.
struct Watchdog {
    /// Milliseconds since `origin` when the current input began; 0 when idle.
    began: Arc<AtomicU64>,
    input: Arc<std::sync::Mutex<Vec<u8>>>,
    origin: Instant,
}

impl Watchdog {
    fn start() -> Watchdog {
        let began = Arc::new(AtomicU64::new(0));
        let input = Arc::new(std::sync::Mutex::new(Vec::new()));
        let origin = Instant::now();
        let (watched, current) = (began.clone(), input.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let at = watched.load(Ordering::Acquire);
            if Arc::strong_count(&watched) == 1 {
                return;
            }
            let running = origin.elapsed().as_millis() as u64;
            if at != 0 && running.saturating_sub(at) > HANG_AFTER.as_millis() as u64 {
                let input = current.lock().map(|i| i.clone()).unwrap_or_default();
                eprintln!(
                    "an input ran longer than {} s (hung): {:?}",
                    HANG_AFTER.as_secs(),
                    String::from_utf8_lossy(&input)
                );
                std::process::abort();
            }
        });
        Watchdog {
            began,
            input,
            origin,
        }
    }

    fn begin(&self, input: &[u8]) {
        if let Ok(mut current) = self.input.lock() {
            current.clear();
            current.extend_from_slice(input);
        }
        let now = self.origin.elapsed().as_millis() as u64;
        self.began.store(now.max(1), Ordering::Release);
    }

    fn end(&self) {
        self.began.store(0, Ordering::Release);
    }
}
