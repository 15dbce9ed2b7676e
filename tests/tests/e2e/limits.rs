//! What the service documents that it refuses, refused by mdlr before anything is sent
//! (issue 13). The simulator refuses the same things, so a refusal that reached it
//! would show: each test checks that no request did.

use std::fs::File;

use mdlr::{Client, Credential, Endpoints, Error, LibraryUpload};
use mdlr_tests::sim::{LIBRARY_UPLOAD_LIMIT, SimMachine};

use crate::util::*;

/// A file of `len` bytes at `path` that takes no room on disk.
fn sparse(path: impl AsRef<std::path::Path>, len: usize) {
    File::create(path)
        .and_then(|f| f.set_len(len as u64))
        .expect("a sparse file");
}

/// A library client of the simulator.
fn client(sim: &Sim) -> Client {
    Client::builder(Credential::token(sim.sim.token()))
        .endpoints(Endpoints::default().with_api_base(&format!("{}/api", sim.sim.api_url())))
        .build()
        .expect("a client")
}

#[test]
fn a_library_upload_over_20_mb_is_refused_before_sending() {
    let sim = Sim::with(SimMachine::many(1));
    sparse(sim.dir.join("big.bin"), LIBRARY_UPLOAD_LIMIT + 1);
    sim.mdlr(&["library", "upload", "big.bin", "--description", "d"])
        .check(
            64,
            "",
            "mdlr: cannot upload big.bin: big.bin is 20.0 MB (20971521 bytes): the API \
             takes library files up to 20 MB (20971520 bytes); the Defender portal takes \
             up to 250 MB\n",
        );
    assert_eq!(sim.stats().requests_to("library.upload"), 0);

    // The library refuses it too, for a program that did not check first.
    let upload = LibraryUpload::new("big.bin", vec![0; LIBRARY_UPLOAD_LIMIT + 1]);
    match client(&sim).upload_library_file(&upload) {
        Err(e @ Error::InvalidArgument { .. }) => {
            assert!(e.to_string().contains("up to 20 MB"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats().requests_to("library.upload"), 0);

    // At the limit it goes.
    sparse(sim.dir.join("big.bin"), LIBRARY_UPLOAD_LIMIT);
    sim.mdlr(&["library", "upload", "big.bin", "--description", "d"])
        .check(0, "uploaded big.bin (20971520 bytes)\n", "");
    assert_eq!(sim.stats().requests_to("library.upload"), 1);
}

#[test]
fn a_library_file_name_outside_the_documented_set_is_refused_with_one_that_would_do() {
    let sim = Sim::with(SimMachine::many(1));
    write(sim.dir.join("collect data (v2).ps1"), "Write-Output 1\r\n");
    sim.mdlr(&[
        "library",
        "upload",
        "collect data (v2).ps1",
        "--description",
        "d",
    ])
    .check(
        64,
        "",
        "mdlr: cannot upload collect data (v2).ps1 under its own name (--name gives it \
         another): \"collect data (v2).ps1\" cannot be a live response library file name: \
         the library takes only letters, digits, '-', '_' and '.'; collect_data_v2.ps1 \
         would do\n",
    );
    sim.mdlr(&[
        "library",
        "upload",
        "collect data (v2).ps1",
        "--name",
        "données.ps1",
        "--description",
        "d",
    ])
    .run()
    .check_err(
        64,
        &[
            "mdlr: cannot upload collect data (v2).ps1: \"données.ps1\" cannot be",
            "; donn_es.ps1 would do\n",
        ],
    );
    match client(&sim).upload_library_file(&LibraryUpload::new("a+b.ps1", b"x".to_vec())) {
        Err(e @ Error::InvalidArgument { .. }) => {
            assert!(e.to_string().ends_with("; a_b.ps1 would do"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats().requests_to("library.upload"), 0);

    sim.mdlr(&[
        "library",
        "upload",
        "collect data (v2).ps1",
        "--name",
        "collect_data_v2.ps1",
        "--description",
        "d",
    ])
    .check(0, "uploaded collect_data_v2.ps1 (16 bytes)\n", "");
}
