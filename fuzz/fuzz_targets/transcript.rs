//! `Transcript::parse` on anything: it never panics, never keeps NUL padding, and what it
//! reads comes back unchanged through its own strict JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mdlr::Transcript;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Transcript::parse(data) else {
        return;
    };
    let _ = t.exit_status();
    assert!(!t.script_output.ends_with('\0'), "padding kept: {t:?}");
    assert!(!t.script_errors.ends_with('\0'), "padding kept: {t:?}");
    let again = serde_json::to_vec(&t).expect("a transcript serialises");
    let back = Transcript::parse(&again).expect("its own JSON parses");
    assert_eq!(back, t, "changed on a round trip through {again:?}");
});
