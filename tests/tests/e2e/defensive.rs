//! Where the real service does what our contract does not say (issue 13, point 5):
//! field reports and other clients show it, the simulator learns it, and mdlr holds.

use mdlr_tests::sim::SimMachine;
use mdlr_tests::util::sha256_hex;

use crate::util::*;

fn host(n: usize) -> String {
    format!("host{n:04}.contoso.test")
}

/// A GetFile result that is not gzip, in a batch: saved as it came with a warning
/// naming the machine, listed in the manifest with its SHA-256; the other machine's
/// result is un-gzipped as usual; the batch succeeds.
#[test]
fn a_getfile_result_that_is_not_gzip_is_saved_with_a_warning() {
    let mut machines = SimMachine::many(2);
    for m in &mut machines {
        m.files
            .push((r"C:\Temp\a.txt".to_owned(), b"evidence\n".repeat(1000)));
    }
    machines[1].plain_getfile = true;
    let sim = Sim::with(machines);
    let out = sim
        .live(&["getfile", &host(1), &host(2), r"C:\Temp\a.txt", "-o", "out"])
        .run();
    out.status(0);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("mdlr: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains(&host(2)) && warnings[0].contains("is not gzip"),
        "{}",
        warnings[0]
    );
    let want = b"evidence\n".repeat(1000);
    for n in [1, 2] {
        assert_eq!(read(sim.dir.join("out").join(host(n)).join("a.txt")), want);
    }
    let manifest = std::fs::read_to_string(sim.dir.join("out/manifest.jsonl")).expect("manifest");
    assert_eq!(manifest.lines().count(), 2);
    assert!(manifest.contains(&sha256_hex(&want)));
    sim.mdlr(&["verify", "out"]).run().status(0);
}
