//! `disposition_file_name` and `safe_file_name`, the way a download names its file: the
//! name that comes out is one plain file name inside the target directory — no `/` or
//! `\`, no NUL or other control character, not `..`, not hidden (no leading `.`), at
//! most 200 bytes.

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

/// Checks what `safe_file_name` makes of `raw`.
fn check(raw: &str) {
    let Some(name) = mdlr::files::safe_file_name(raw) else {
        return;
    };
    assert!(!name.is_empty(), "{raw:?}");
    assert!(
        !name.contains(['/', '\\']),
        "{raw:?} gave {name:?}: a separator"
    );
    assert!(
        !name.chars().any(char::is_control),
        "{raw:?} gave {name:?}: a control character"
    );
    assert!(name != "..", "{raw:?} gave ..");
    assert!(
        !name.starts_with('.'),
        "{raw:?} gave the hidden name {name:?}"
    );
    assert!(name.len() <= 200, "{raw:?} gave {} bytes", name.len());
    let mut parts = Path::new(&name).components();
    assert!(
        matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none(),
        "{raw:?} gave {name:?}: not one plain component"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    if let Some(name) = mdlr::files::disposition_file_name(text) {
        check(&name);
        // GetFile results lose their `.gz` before the name is made safe.
        let n = name.len();
        if n >= 3 && name.is_char_boundary(n - 3) && name[n - 3..].eq_ignore_ascii_case(".gz") {
            check(&name[..n - 3]);
        }
    }
});
