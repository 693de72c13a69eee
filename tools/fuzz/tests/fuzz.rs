//! The fuzz targets in CI: every corpus input, then a bounded, seeded run of
//! mutations per target (the long runs are by hand, `tools/fuzz/README.md`);
//! and the runner itself finds a failure planted for it.

use std::time::Duration;

use bondledger_fuzz::{corpus, mutate, TARGETS};

/// Mutations per target in CI: seconds on a debug build.
const CI_EXECUTIONS: u64 = 4_000;

#[test]
fn every_target_has_a_corpus_and_survives_it() {
    for (name, target) in TARGETS {
        let inputs = corpus::load(name).expect("the corpus");
        assert!(inputs.len() > 10, "{name}: a corpus of {}", inputs.len());
        let summary = mutate::run(target, &inputs, 0, 0, Duration::MAX).unwrap_or_else(|f| {
            panic!(
                "{name} fails on a corpus input: {}: {:?}",
                f.message,
                String::from_utf8_lossy(&f.input)
            )
        });
        assert_eq!(summary.executions, inputs.len() as u64);
    }
}

#[test]
fn every_target_survives_a_seeded_run_of_mutations() {
    for (seed, (name, target)) in TARGETS.into_iter().enumerate() {
        let inputs = corpus::load(name).expect("the corpus");
        let summary = mutate::run(
            target,
            &inputs,
            seed as u64 + 1,
            inputs.len() as u64 + CI_EXECUTIONS,
            Duration::from_secs(120),
        )
        .unwrap_or_else(|f| {
            panic!(
                "{name} (seed {}) fails: {}: {:?}",
                seed + 1,
                f.message,
                String::from_utf8_lossy(&f.input)
            )
        });
        assert!(
            summary.executions > inputs.len() as u64,
            "{name}: mutations were tried"
        );
    }
}

/// A parser bug the runner must find: a panic on a quantity written with
/// an exponent, which the corpus never holds but its dictionary does.
fn planted(data: &[u8]) {
    if data.windows(5).any(|w| w == b"\"1e3\"") {
        panic!("planted: an exponent");
    }
}

#[test]
fn the_runner_finds_a_planted_failure_and_names_its_input() {
    // A corpus of its own: the kept one grows with what libFuzzer finds.
    let inputs = vec![
        br#"{"id":"p-1","type":"material_imported","manual":"C31012600042","date":"2026-02-10","material":1,"qty":"1","declaration":"310120261000010001","mode":"0615"}"#.to_vec(),
        b"# a comment\n\n".to_vec(),
    ];
    let failure = mutate::run(planted, &inputs, 7, 200_000, Duration::from_secs(120))
        .expect_err("the planted failure is found");
    assert!(failure.message.contains("planted"), "{}", failure.message);
    assert!(failure.input.windows(5).any(|w| w == b"\"1e3\""));
}

#[test]
fn the_same_seed_tries_the_same_inputs() {
    use rand::SeedableRng;
    let base = br#"{"type":"material_imported","qty":"1"}"#;
    let run = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..50)
            .map(|_| mutate::mutate(&mut rng, base, b"[1,2]"))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}
