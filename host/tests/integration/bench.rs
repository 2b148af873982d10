//! `bench/`: a benchmark run whose servers answered anything but 2xx, or lost
//! connections, must not pass for a clean one. `bench/run.sh` ends with
//! `bench/summarize.py` (in a pipeline with `pipefail`), so the summary's exit status
//! is the run's; it is checked here on raw results written out by hand.

use std::process::{Command, Output};

use crate::util::workspace;

/// Raw results as `bench/run.sh` records them, for one round of the hello on wasi-host
/// whose 80-connection run saw `non2xx` non-2xx responses and `socket_errors` socket
/// errors.
fn raw_results(non2xx: u32, socket_errors: u32) -> String {
    let rows = [
        ("rps_c1", "9000".to_owned()),
        ("rps_c80", "21000".to_owned()),
        ("p50_c80_ms", "3.5".to_owned()),
        ("p99_c80_ms", "9.1".to_owned()),
        ("non2xx_c80", non2xx.to_string()),
        ("socket_errors_c80", socket_errors.to_string()),
    ];
    let mut raw = "# date\t2026-01-01T00:00:00Z\nround\tserver\tmetric\tvalue\n".to_owned();
    for (metric, value) in rows {
        raw.push_str(&format!("1\twasi-host/hello\t{metric}\t{value}\n"));
    }
    raw
}

/// Runs `bench/summarize.py` on `raw`.
fn summarize(raw: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.tsv");
    std::fs::write(&path, raw).expect("write raw results");
    Command::new("python3")
        .arg(workspace().join("bench/summarize.py"))
        .arg(&path)
        .output()
        .expect("run python3 bench/summarize.py")
}

#[test]
fn a_clean_run_is_summarized_and_passes() {
    let output = summarize(&raw_results(0, 0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("21,000"), "{stdout}");
    assert!(!stdout.contains("Errors seen by wrk"), "{stdout}");
}

#[test]
fn a_run_with_non_2xx_answers_or_socket_errors_fails() {
    for (non2xx, socket_errors, metric) in [(3, 0, "non2xx_c80"), (0, 5, "socket_errors_c80")] {
        let output = summarize(&raw_results(non2xx, socket_errors));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("wasi-host/hello: {metric}")),
            "{stdout}"
        );
        assert!(!output.status.success(), "{metric}: {output:?}");
    }
}
