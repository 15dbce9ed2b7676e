//! `ResultLink::expires` and `expires_at` on any link: the expiry (`se=`) comes from the
//! service, and reading it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let link = mdlr::ResultLink::new(format!("https://h.blob.core.windows.net/c/b?{text}"));
    let _ = link.expires();
    let _ = link.expires_at();
});
